//! The scheduler's settings as its own code reads them from the environment
//! docker-compose gives its container. Checks on a compose file alone can
//! only see what the file sets; what the service then does also depends on
//! its defaults (`SERVER_HOST` is not set, so the code's default decides
//! where it listens) and on how it reads the secrets (the database URI is
//! built from the user and password files, percent-encoded). Reading the
//! settings with `Settings::from_lookup`, over exactly the variables of the
//! container, makes those checks about the values the service would use.
//!
//! In the container the code reads the process environment over
//! `config/.env` (absent from the image: [`assert_image_holds_no_settings_file`])
//! over the topics file that `TOPICS_FILE` names; each `/run/secrets/NAME`
//! is the host file that compose's `secrets:` defines `NAME` from.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use scheduler_service::config::{Settings, vars};
use serde_yaml::Value;

use crate::{
    compose_files::{environment, names, read, root, scalar},
    dockerfile::instructions,
};

/// Where compose mounts a service's secrets.
const SECRETS_DIR: &str = "/run/secrets/";

/// The host file that compose mounts at `/run/secrets/NAME` in `service`:
/// the secret must be mounted into the service and defined in `config`.
pub fn secret_file(config: &Value, service: &Value, name: &str) -> PathBuf {
    let mounted: BTreeSet<String> = names(service.get("secrets")).into_iter().collect();
    assert!(mounted.contains(name), "secret {name} is not mounted");
    let file = config["secrets"][name]
        .get("file")
        .unwrap_or_else(|| panic!("secret {name} is not defined from a file"));
    root().join(scalar(file))
}

/// The scheduler's compose environment as its process would read it on
/// this host: each `/run/secrets/NAME` value replaced by the host file that
/// compose mounts there.
pub fn container_environment(config: &Value, service: &Value) -> BTreeMap<String, String> {
    environment(service)
        .into_iter()
        .map(|(name, value)| match value.strip_prefix(SECRETS_DIR) {
            Some(secret) => {
                let file = secret_file(config, service, secret);
                (name, file.to_string_lossy().into_owned())
            }
            None => (name, value),
        })
        .collect()
}

/// The settings the service's code reads from `env` (a container's
/// variables with host paths) over the topics file that `TOPICS_FILE`
/// names; a configuration error fails the test.
pub fn code_settings(env: &BTreeMap<String, String>) -> Settings {
    let mut merged = BTreeMap::new();
    if let Some(topics) = env.get(vars::TOPICS_FILE) {
        let entries = dotenvy::from_path_iter(topics)
            .unwrap_or_else(|e| panic!("cannot read the topics file {topics}: {e}"));
        for entry in entries {
            let (name, value) = entry.unwrap_or_else(|e| panic!("{topics}: {e}"));
            merged.insert(name, value);
        }
    }
    merged.extend(env.clone());
    Settings::from_lookup(|name| merged.get(name).cloned())
        .unwrap_or_else(|e| panic!("the service would not start with {env:?}: {e}"))
}

/// The settings of the scheduler in compose's resolved `config`.
pub fn compose_settings(config: &Value) -> Settings {
    assert_image_holds_no_settings_file();
    let service = &config["services"]["scheduler-service"];
    code_settings(&container_environment(config, service))
}

/// The scheduler's image holds no `config/.env`, which the code would read
/// under the process environment: the final stage copies no folder and no
/// such file from the build context (only the binary from a build stage).
pub fn assert_image_holds_no_settings_file() {
    let steps = instructions(&read(&root().join("Dockerfile")));
    let last_from = steps
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("a FROM");
    for (keyword, args) in &steps[last_from..] {
        if !matches!(keyword.as_str(), "COPY" | "ADD") || args.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = args
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let Some((_, sources)) = words.split_last() else {
            panic!("Dockerfile: {keyword} {args} copies nothing");
        };
        for source in sources {
            let path = root().join(source);
            assert!(
                path.is_file() && !source.trim_start_matches("./").ends_with("config/.env"),
                "Dockerfile: the final stage copies {source}, which is or may hold \
                 config/.env: the service would read settings compose does not show"
            );
        }
    }
}
