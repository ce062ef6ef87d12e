//! Reading the development environment's files: the two compose files as
//! written and as `docker-compose config` resolves them with `.env`, `.env`
//! itself, and the YAML values in them (services, environments, ports,
//! secrets). Every check module reads through these.

use std::{
    collections::BTreeMap,
    fs,
    io::ErrorKind,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_yaml::{Mapping, Value};

/// The service with its database and broker.
pub const BASE: &str = "docker-compose.yml";
/// The development tools and the observability stack.
pub const OVERRIDE: &str = "docker-compose.override.yml";

/// The repository.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file's text; a missing file fails the test.
pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A YAML file of the repository, parsed.
pub fn yaml_file(name: &str) -> Value {
    let path = root().join(name);
    serde_yaml::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// `.env` as written: name → value, in file order.
pub fn dotenv() -> Vec<(String, String)> {
    read(&root().join(".env"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!(".env: not NAME=VALUE: {l:?}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// Runs `docker-compose -f FILE... ARGS` in the repository, with the
/// variables of `.env` removed from its environment so that `.env` alone
/// decides them.
fn docker_compose(files: &[&str], args: &[&str]) -> Output {
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(root());
    for (name, _) in dotenv() {
        cmd.env_remove(name);
    }
    for name in [
        "DOCKER_HOST_IP",
        "COMPOSE_FILE",
        "COMPOSE_PROFILES",
        "COMPOSE_PROJECT_NAME",
        "COMPOSE_PATH_SEPARATOR",
    ] {
        cmd.env_remove(name);
    }
    for file in files {
        cmd.args(["-f", file]);
    }
    cmd.args(args);
    match cmd.output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "docker-compose is not on PATH: these checks run it \
             (install it: apt-get install docker-compose)"
        ),
        Err(e) => panic!("cannot run docker-compose: {e}"),
    }
}

/// `docker-compose config` of these files: checks that it accepts them with
/// `.env` and warns about nothing (an unset variable is only a warning),
/// and returns the resolved configuration.
pub fn resolved_config(files: &[&str]) -> Value {
    let output = docker_compose(files, &["config"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "docker-compose {files:?} config failed ({}):\n{stderr}",
        output.status
    );
    assert!(
        !stderr.contains("WARN") && !stderr.contains("not set"),
        "docker-compose {files:?} config warns:\n{stderr}"
    );
    serde_yaml::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("docker-compose config printed invalid YAML: {e}"))
}

/// The mapping under `key`.
pub fn mapping<'a>(value: &'a Value, key: &str) -> &'a Mapping {
    value
        .get(key)
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("no mapping {key:?} in {value:?}"))
}

/// A string, number or boolean, as text.
pub fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// The services of a compose file, by name.
pub fn services(config: &Value) -> BTreeMap<String, Value> {
    mapping(config, "services")
        .iter()
        .map(|(k, v)| (scalar(k), v.clone()))
        .collect()
}

/// A service's environment, in either compose form (mapping or list).
pub fn environment(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    scalar(k),
                    if v.is_null() {
                        String::new()
                    } else {
                        scalar(v)
                    },
                )
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                let item = scalar(item);
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Some(other) => panic!("environment is neither a mapping nor a list: {other:?}"),
    }
}

/// The names of a service's `env_file` or `secrets` entry, in every form
/// compose accepts: absent, one string, or a list of strings and of
/// mappings (`{source: NAME}` for a secret, `{path: FILE}` for an env file).
/// Any other shape fails the test instead of reading as no names.
pub fn names(value: Option<&Value>) -> Vec<String> {
    let entry = |item: &Value| -> String {
        match item {
            Value::Mapping(_) => {
                let name = item
                    .get("source")
                    .or_else(|| item.get("path"))
                    .unwrap_or_else(|| panic!("an entry with no source or path: {item:?}"));
                scalar(name)
            }
            other => scalar(other),
        }
    };
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items.iter().map(entry).collect(),
        Some(one) => vec![entry(one)],
    }
}

/// Host ports published by a resolved service (`published:` of each port).
pub fn published_ports(service: &Value) -> Vec<u16> {
    port_pairs(service)
        .into_iter()
        .map(|(published, _)| published)
        .collect()
}

/// The names, as strings, sorted.
pub fn sorted(names: impl IntoIterator<Item = impl ToString>) -> Vec<String> {
    let mut v: Vec<String> = names.into_iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

/// (published, target) of each port a resolved service publishes.
pub fn port_pairs(service: &Value) -> Vec<(u16, u16)> {
    let number = |v: &Value| -> u16 {
        let text = scalar(v);
        text.parse()
            .unwrap_or_else(|_| panic!("port {text:?} is not a number"))
    };
    service
        .get("ports")
        .and_then(Value::as_sequence)
        .map(|items| {
            items
                .iter()
                .map(|p| {
                    let target = p
                        .get("target")
                        .unwrap_or_else(|| panic!("port without a target: {p:?}"));
                    let published = p
                        .get("published")
                        .unwrap_or_else(|| panic!("port without a published port: {p:?}"));
                    (number(published), number(target))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// (scheme, host, port) of an `http://host:port[/path]` URL; the port is
/// required.
pub fn url_parts(url: &str) -> (String, String, u16) {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("{url:?} is not a URL"));
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{url:?} names no port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("{url:?}: port {port:?} is not a number"));
    (scheme.to_owned(), host.to_owned(), port)
}

/// The files of a folder whose names end in one of `extensions`, sorted.
pub fn files_in(folder: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", folder.display()))
        .map(|entry| entry.expect("a folder entry").path())
        .filter(|path| {
            path.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    files.sort();
    files
}
