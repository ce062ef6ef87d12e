//! The Dockerfiles: a small parser of their instructions (continuation
//! lines joined) and `FROM` lines, and the checks on them: every image is
//! pinned to a version, each service folder starts from the article's
//! image, and the service's own image is a multi-stage build that runs as a
//! non-root user. Also which Dockerfiles docker-compose builds and what
//! they copy into their images, which the Prometheus and Grafana checks use
//! to find their configuration.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde_yaml::Value;

use crate::compose_files::{BASE, OVERRIDE, read, root, scalar, services, yaml_file};

/// Each service folder and the image its Dockerfile starts from: repository
/// (after any registry or namespace) and the start of the tag.
const IMAGES: &[(&str, &str, &str)] = &[
    ("scheduler-db-service", "mongo", "7.0."),
    ("mongo-express-service", "mongo-express", "1."),
    ("zookeeper-service", "zookeeper", "3.8."),
    ("zoonavigator-service", "zoonavigator", "1."),
    ("kafka-service", "kafka", "3.4."),
    ("kafkaui-service", "kafka-ui", "v"),
    ("grpcui-service", "grpcui", "v"),
    ("prometheus-service", "prometheus", "v2."),
    ("grafana-service", "grafana", "11."),
    ("jaeger-service", "all-in-one", "1."),
];

/// One `FROM` of a Dockerfile.
pub struct FromLine {
    image: String,
    alias: Option<String>,
}

/// The instructions of a Dockerfile (continuation lines joined), as
/// (keyword in upper case, arguments).
pub fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    out
}

pub fn froms(dockerfile: &str) -> Vec<FromLine> {
    instructions(dockerfile)
        .into_iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, args)| {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let alias = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                [_] => None,
                _ => panic!("unexpected FROM {args:?}"),
            };
            FromLine {
                image: words[0].to_owned(),
                alias,
            }
        })
        .collect()
}

/// (repository, tag) of an image reference; a digest counts as its tag.
pub fn split_image(image: &str) -> (String, Option<String>) {
    if let Some((name, digest)) = image.split_once('@') {
        return (
            name.rsplit('/').next().unwrap_or(name).to_owned(),
            Some(digest.to_owned()),
        );
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((repo, tag)) => (repo.to_owned(), Some(tag.to_owned())),
        None => (last.to_owned(), None),
    }
}

/// Every `FROM` that is not an earlier stage names a pinned image: a tag
/// other than `latest`, or a digest.
pub fn assert_pinned(path: &Path) -> Vec<FromLine> {
    let text = read(path);
    let froms = froms(&text);
    assert!(!froms.is_empty(), "{}: no FROM", path.display());
    let mut stages = BTreeSet::new();
    for from in &froms {
        if !stages.contains(&from.image) && from.image != "scratch" {
            let (_, tag) = split_image(&from.image);
            match tag.as_deref() {
                None => panic!("{}: FROM {} has no tag", path.display(), from.image),
                Some("latest") => panic!("{}: FROM {} is not pinned", path.display(), from.image),
                Some(tag) => assert!(
                    tag.starts_with("sha256:") || tag.chars().any(|c| c.is_ascii_digit()),
                    "{}: FROM {} names no version",
                    path.display(),
                    from.image
                ),
            }
        }
        if let Some(alias) = &from.alias {
            stages.insert(alias.clone());
        }
    }
    froms
}

/// The service folders that docker-compose builds, with their Dockerfiles.
/// A service without a build section must be one of `docker-compose.yml`
/// that the override only adds settings to.
pub fn build_dockerfiles(raw: &Value) -> Vec<(String, PathBuf)> {
    let base = services(&yaml_file(BASE));
    services(raw)
        .into_iter()
        .filter_map(|(name, service)| {
            let Some(build) = service.get("build") else {
                assert!(
                    base.get(&name).is_some_and(|s| s.get("build").is_some()),
                    "service {name} has no build section"
                );
                return None;
            };
            let (context, dockerfile) = match build {
                Value::String(context) => (context.clone(), "Dockerfile".to_owned()),
                build => (
                    scalar(build.get("context").expect("build context")),
                    build
                        .get("dockerfile")
                        .map_or_else(|| "Dockerfile".to_owned(), scalar),
                ),
            };
            let context = root().join(context);
            assert!(
                context.is_dir(),
                "service {name}: build context {} is not a folder",
                context.display()
            );
            let dockerfile = context.join(dockerfile);
            assert!(
                dockerfile.is_file(),
                "service {name}: {} does not exist",
                dockerfile.display()
            );
            Some((name, dockerfile))
        })
        .collect()
}

#[test]
fn images_are_pinned_and_the_service_image_runs_as_a_non_root_user() {
    let mut dockerfiles = vec![root().join("Dockerfile")];
    for file in [BASE, OVERRIDE] {
        let raw = yaml_file(file);
        for (name, service) in services(&raw) {
            if let Some(image) = service.get("image") {
                let image = scalar(image);
                let (_, tag) = split_image(&image);
                assert!(
                    tag.is_some() && tag.as_deref() != Some("latest"),
                    "{file}: service {name}: image {image} is not pinned"
                );
            }
        }
        dockerfiles.extend(build_dockerfiles(&raw).into_iter().map(|(_, path)| path));
    }
    for path in &dockerfiles {
        assert_pinned(path);
    }
    assert_service_folders_start_from_the_articles_images(&dockerfiles);
    assert_no_latest_image_anywhere(&dockerfiles);
    assert_service_image_runs_as_a_non_root_user();
    assert_build_context_leaves_out_local_state();
}

/// Each service folder starts from the article's image.
fn assert_service_folders_start_from_the_articles_images(dockerfiles: &[PathBuf]) {
    for (folder, repository, tag_prefix) in IMAGES {
        let path = root().join(folder).join("Dockerfile");
        assert!(
            dockerfiles.contains(&path),
            "{folder} is not built by docker-compose"
        );
        let froms = assert_pinned(&path);
        let (repo, tag) = split_image(&froms.last().expect("a FROM").image);
        let tag = tag.unwrap_or_default();
        assert!(
            repo == *repository && tag.starts_with(tag_prefix),
            "{}: expected {repository}:{tag_prefix}*, found {repo}:{tag}",
            path.display()
        );
    }
}

/// No `latest` image anywhere.
fn assert_no_latest_image_anywhere(dockerfiles: &[PathBuf]) {
    for path in dockerfiles
        .iter()
        .chain(&[root().join(BASE), root().join(OVERRIDE)])
    {
        let text = read(path);
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            assert!(
                !line.contains(":latest"),
                "{}: uses a latest image: {line}",
                path.display()
            );
        }
    }
}

/// The service's image: a multi-stage build whose last stage runs the
/// binary as a non-root user.
fn assert_service_image_runs_as_a_non_root_user() {
    let dockerfile = read(&root().join("Dockerfile"));
    let steps = instructions(&dockerfile);
    let last_from = steps
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("a FROM");
    assert!(
        steps[..last_from].iter().any(|(k, _)| k == "FROM"),
        "Dockerfile: not a multi-stage build"
    );
    let user = steps[last_from..]
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, user)| user.clone())
        .expect("Dockerfile: the final stage sets no USER (it would run as root)");
    let who = user.split(':').next().unwrap_or_default();
    assert!(
        who != "root" && who != "0",
        "Dockerfile: the final stage runs as {user}"
    );
    assert!(
        steps[last_from..]
            .iter()
            .any(|(k, args)| k == "COPY" && args.contains("--from=")),
        "Dockerfile: the final stage does not copy the binary from a build stage"
    );
}

/// The build context leaves out local build output, state and history.
fn assert_build_context_leaves_out_local_state() {
    let ignored: BTreeSet<String> = read(&root().join(".dockerignore"))
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_owned())
        .collect();
    for entry in ["target", ".services", "data", ".git"] {
        assert!(
            ignored.contains(entry),
            ".dockerignore does not list {entry}"
        );
    }
}

/// The file or folder of `folder`'s build context that its Dockerfile
/// copies to `dest` in the image (a `COPY SRC DEST` line), checked to exist.
pub fn copied_to(folder: &str, dest: &str) -> PathBuf {
    let dockerfile = root().join(folder).join("Dockerfile");
    let source = instructions(&read(&dockerfile))
        .into_iter()
        .filter(|(k, _)| k == "COPY")
        .find_map(|(_, args)| {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            match words.as_slice() {
                [src, dst] if dst.trim_end_matches('/') == dest => Some((*src).to_owned()),
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("{}: nothing is copied to {dest}", dockerfile.display()));
    let path = root().join(folder).join(source);
    assert!(
        path.exists(),
        "{}: copies {} to {dest}, which does not exist",
        dockerfile.display(),
        path.display()
    );
    path
}
