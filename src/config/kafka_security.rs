//! Transport security of the Kafka client: TLS and SASL, the same for the
//! producer, the admin client and the run-result consumers.
//!
//! The variables are checked here as far as they can be without a broker
//! (known protocol and mechanism, a SASL mechanism with a user and a
//! password, files that can be read, no TLS or SASL variable that the
//! protocol would ignore), and then librdkafka itself is asked to build a
//! client from them, with no brokers so that nothing connects: a value it
//! refuses, a CA file that is no PEM, or a key that does not open stops
//! start-up with one line naming the variable, not at the first publish.

use std::{fmt, path::Path};

use rdkafka::{ClientConfig, error::KafkaError, producer::BaseProducer};
use serde::Deserialize;

use super::{ConfigError, value, vars};

/// A text that logs and `Debug` never show.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The text itself, to hand to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No TLS, no SASL (the default).
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's name of the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// The SASL mechanisms this build of librdkafka has (GSSAPI is not built;
/// OAUTHBEARER needs a token source the service does not have).
const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// SASL credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret,
}

/// TLS of the broker connections; unset fields keep librdkafka's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaTlsSettings {
    /// PEM file or folder of CAs (`ssl.ca.location`).
    pub ca_location: Option<String>,
    /// Client certificate and key files, for brokers that ask for one.
    pub client_certificate: Option<(String, String)>,
    /// Password of an encrypted key.
    pub key_password: Option<Secret>,
    /// `https` or `none` (`ssl.endpoint.identification.algorithm`).
    pub endpoint_identification: Option<String>,
}

/// How the Kafka client secures its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSecurity {
    /// `security.protocol`.
    pub protocol: SecurityProtocol,
    /// With `sasl_*`.
    pub sasl: Option<SaslSettings>,
    /// With `ssl` or `sasl_ssl`.
    pub tls: Option<KafkaTlsSettings>,
}

/// One librdkafka property and the variable it comes from.
pub struct KafkaProperty {
    /// librdkafka's name.
    pub name: &'static str,
    /// Its value (a secret's text too: do not log it).
    pub value: String,
    /// The variable that set it.
    pub variable: &'static str,
}

impl KafkaSecurity {
    /// The librdkafka properties of these settings, each with its variable.
    pub fn properties(&self) -> Vec<KafkaProperty> {
        let property = |name, value: &str, variable| KafkaProperty {
            name,
            value: value.to_owned(),
            variable,
        };
        let mut properties = vec![property(
            "security.protocol",
            self.protocol.as_str(),
            vars::KAFKA_SECURITY_PROTOCOL,
        )];
        if let Some(sasl) = &self.sasl {
            properties.extend([
                property(
                    "sasl.mechanisms",
                    &sasl.mechanism,
                    vars::KAFKA_SASL_MECHANISM,
                ),
                property("sasl.username", &sasl.username, vars::KAFKA_SASL_USERNAME),
                property(
                    "sasl.password",
                    sasl.password.expose(),
                    vars::KAFKA_SASL_PASSWORD,
                ),
            ]);
        }
        let Some(tls) = &self.tls else {
            return properties;
        };
        if let Some(ca) = &tls.ca_location {
            properties.push(property("ssl.ca.location", ca, vars::KAFKA_SSL_CA_LOCATION));
        }
        if let Some((certificate, key)) = &tls.client_certificate {
            properties.extend([
                property(
                    "ssl.certificate.location",
                    certificate,
                    vars::KAFKA_SSL_CERTIFICATE_LOCATION,
                ),
                property("ssl.key.location", key, vars::KAFKA_SSL_KEY_LOCATION),
            ]);
        }
        if let Some(password) = &tls.key_password {
            properties.push(property(
                "ssl.key.password",
                password.expose(),
                vars::KAFKA_SSL_KEY_PASSWORD,
            ));
        }
        if let Some(algorithm) = &tls.endpoint_identification {
            properties.push(property(
                "ssl.endpoint.identification.algorithm",
                algorithm,
                vars::KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM,
            ));
        }
        properties
    }

    /// Asks librdkafka to build a client from these settings, without
    /// brokers (nothing connects): what it refuses is an error naming the
    /// variable at fault.
    pub(super) fn check_with_librdkafka(&self) -> Result<(), ConfigError> {
        let properties = self.properties();
        let mut config = ClientConfig::new();
        for property in &properties {
            config.set(property.name, &property.value);
        }
        let variable_of = |text: &str| {
            properties
                .iter()
                .find(|property| text.contains(property.name))
                .map_or(vars::KAFKA_SECURITY_PROTOCOL, |property| property.variable)
        };
        match config.create::<BaseProducer>() {
            Ok(_) => Ok(()),
            Err(KafkaError::ClientConfig(_, description, key, _)) => Err(ConfigError::new(
                variable_of(&key),
                format!("librdkafka refuses it: {description}"),
            )),
            Err(err) => {
                let text = err.to_string();
                Err(ConfigError::new(
                    variable_of(&text),
                    format!("librdkafka refuses it: {text}"),
                ))
            }
        }
    }
}

/// The variables of the Kafka client's security.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct KafkaSecurityVars {
    kafka_security_protocol: Option<String>,
    kafka_sasl_mechanism: Option<String>,
    kafka_sasl_username_file: Option<String>,
    kafka_sasl_username: Option<String>,
    kafka_sasl_password_file: Option<String>,
    kafka_sasl_password: Option<String>,
    kafka_ssl_ca_location: Option<String>,
    kafka_ssl_certificate_location: Option<String>,
    kafka_ssl_key_location: Option<String>,
    kafka_ssl_key_password_file: Option<String>,
    kafka_ssl_key_password: Option<String>,
    kafka_ssl_endpoint_identification_algorithm: Option<String>,
}

impl KafkaSecurityVars {
    /// The security settings, checked across the variables (not yet by
    /// librdkafka: see [`KafkaSecurity::check_with_librdkafka`]).
    pub(super) fn into_settings(self) -> Result<KafkaSecurity, ConfigError> {
        let protocol = match self
            .kafka_security_protocol
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("plaintext") => SecurityProtocol::Plaintext,
            Some("ssl") => SecurityProtocol::Ssl,
            Some("sasl_plaintext") => SecurityProtocol::SaslPlaintext,
            Some("sasl_ssl") => SecurityProtocol::SaslSsl,
            Some(other) => {
                return Err(ConfigError::new(
                    vars::KAFKA_SECURITY_PROTOCOL,
                    format!("expected plaintext, ssl, sasl_plaintext or sasl_ssl, got {other:?}"),
                ));
            }
        };
        let sasl = self.sasl(protocol)?;
        let tls = self.tls(protocol)?;
        Ok(KafkaSecurity {
            protocol,
            sasl,
            tls,
        })
    }

    fn sasl(&self, protocol: SecurityProtocol) -> Result<Option<SaslSettings>, ConfigError> {
        if !protocol.uses_sasl() {
            return unused(
                protocol,
                &[
                    (vars::KAFKA_SASL_MECHANISM, &self.kafka_sasl_mechanism),
                    (
                        vars::KAFKA_SASL_USERNAME_FILE,
                        &self.kafka_sasl_username_file,
                    ),
                    (vars::KAFKA_SASL_USERNAME, &self.kafka_sasl_username),
                    (
                        vars::KAFKA_SASL_PASSWORD_FILE,
                        &self.kafka_sasl_password_file,
                    ),
                    (vars::KAFKA_SASL_PASSWORD, &self.kafka_sasl_password),
                ],
            )
            .map(|()| None);
        }
        let mechanism = self
            .kafka_sasl_mechanism
            .as_deref()
            .ok_or_else(|| {
                ConfigError::new(
                    vars::KAFKA_SASL_MECHANISM,
                    format!("required with {}", protocol.as_str()),
                )
            })?
            .to_ascii_uppercase();
        if !SASL_MECHANISMS.contains(&mechanism.as_str()) {
            return Err(ConfigError::new(
                vars::KAFKA_SASL_MECHANISM,
                format!("expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got {mechanism:?}"),
            ));
        }
        let required = |file_name, file: &Option<String>, plain: &Option<String>, name| {
            value::secret(file_name, file.as_deref(), plain.clone())?
                .filter(|text| !text.is_empty())
                .ok_or_else(|| {
                    ConfigError::new(
                        name,
                        format!("required with KAFKA_SASL_MECHANISM={mechanism}"),
                    )
                })
        };
        let username = required(
            vars::KAFKA_SASL_USERNAME_FILE,
            &self.kafka_sasl_username_file,
            &self.kafka_sasl_username,
            vars::KAFKA_SASL_USERNAME,
        )?;
        let password = required(
            vars::KAFKA_SASL_PASSWORD_FILE,
            &self.kafka_sasl_password_file,
            &self.kafka_sasl_password,
            vars::KAFKA_SASL_PASSWORD,
        )?;
        Ok(Some(SaslSettings {
            mechanism,
            username,
            password: Secret(password),
        }))
    }

    fn tls(&self, protocol: SecurityProtocol) -> Result<Option<KafkaTlsSettings>, ConfigError> {
        let algorithm = vars::KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM;
        if !protocol.uses_tls() {
            return unused(
                protocol,
                &[
                    (vars::KAFKA_SSL_CA_LOCATION, &self.kafka_ssl_ca_location),
                    (
                        vars::KAFKA_SSL_CERTIFICATE_LOCATION,
                        &self.kafka_ssl_certificate_location,
                    ),
                    (vars::KAFKA_SSL_KEY_LOCATION, &self.kafka_ssl_key_location),
                    (
                        vars::KAFKA_SSL_KEY_PASSWORD_FILE,
                        &self.kafka_ssl_key_password_file,
                    ),
                    (vars::KAFKA_SSL_KEY_PASSWORD, &self.kafka_ssl_key_password),
                    (algorithm, &self.kafka_ssl_endpoint_identification_algorithm),
                ],
            )
            .map(|()| None);
        }
        let ca_location = self.kafka_ssl_ca_location.clone();
        if let Some(path) = &ca_location {
            readable(vars::KAFKA_SSL_CA_LOCATION, path)?;
        }
        let client_certificate = self.client_certificate()?;
        let key_password = value::secret(
            vars::KAFKA_SSL_KEY_PASSWORD_FILE,
            self.kafka_ssl_key_password_file.as_deref(),
            self.kafka_ssl_key_password.clone(),
        )?;
        if key_password.is_some() && client_certificate.is_none() {
            return Err(ConfigError::new(
                vars::KAFKA_SSL_KEY_PASSWORD,
                "set, but no KAFKA_SSL_KEY_LOCATION",
            ));
        }
        let endpoint_identification = match self
            .kafka_ssl_endpoint_identification_algorithm
            .as_deref()
            .map(str::to_ascii_lowercase)
        {
            Some(text) if text != "https" && text != "none" => {
                return Err(ConfigError::new(
                    algorithm,
                    format!("expected https or none, got {text:?}"),
                ));
            }
            other => other,
        };
        Ok(Some(KafkaTlsSettings {
            ca_location,
            client_certificate,
            key_password: key_password.map(Secret),
            endpoint_identification,
        }))
    }
    /// The client certificate and key files: both or neither, readable.
    fn client_certificate(&self) -> Result<Option<(String, String)>, ConfigError> {
        match (
            &self.kafka_ssl_certificate_location,
            &self.kafka_ssl_key_location,
        ) {
            (Some(certificate), Some(key)) => {
                readable(vars::KAFKA_SSL_CERTIFICATE_LOCATION, certificate)?;
                readable(vars::KAFKA_SSL_KEY_LOCATION, key)?;
                Ok(Some((certificate.clone(), key.clone())))
            }
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::new(
                vars::KAFKA_SSL_KEY_LOCATION,
                "required with KAFKA_SSL_CERTIFICATE_LOCATION",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                vars::KAFKA_SSL_CERTIFICATE_LOCATION,
                "required with KAFKA_SSL_KEY_LOCATION",
            )),
        }
    }
}

/// An error naming the first of `set` that is set, since `protocol` would
/// ignore it.
fn unused(protocol: SecurityProtocol, set: &[(&str, &Option<String>)]) -> Result<(), ConfigError> {
    match set.iter().find(|(_, value)| value.is_some()) {
        Some((name, _)) => Err(ConfigError::new(
            name,
            format!(
                "set, but KAFKA_SECURITY_PROTOCOL is {}, which does not use it",
                protocol.as_str()
            ),
        )),
        None => Ok(()),
    }
}

/// Checks that the file or folder at `path`, which the variable `name`
/// gave, can be read.
fn readable(name: &str, path: &str) -> Result<(), ConfigError> {
    let path = Path::new(path);
    let read = if path.is_dir() {
        std::fs::read_dir(path).map(drop)
    } else {
        std::fs::File::open(path).map(drop)
    };
    read.map_err(|e| ConfigError::new(name, format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests;
