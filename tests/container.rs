//! The container and the unit as an operator deploys them: the container's command line on
//! its environment alone, `--help`, and static checks of the Dockerfile, the compose files and
//! the systemd unit (no Docker engine needed).
#![allow(clippy::unwrap_used)]

mod common;

use common::cli::*;
use common::{assert_exactly_once, frozen_sim, wait_done, TestRedis};
use std::collections::BTreeMap;
use tron_actors::tools::local_redis::free_port;

/// The Dockerfile's instructions, continuation lines joined, comments dropped, per stage.
fn dockerfile_stages() -> Vec<Vec<(String, String)>> {
    let text = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in joined {
        let (keyword, rest) = instruction.split_once(' ').unwrap();
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("an instruction before FROM")
            .push((keyword, rest.trim().to_string()));
    }
    stages
}

fn instruction<'a>(stage: &'a [(String, String)], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// An exec-form argument list: `["a", "b"]`.
fn exec_form(value: &str) -> Vec<String> {
    serde_json::from_str(value).unwrap_or_else(|_| panic!("not an exec-form list: {value}"))
}

/// The final stage's ENV, as `KEY=value` pairs.
fn image_env(stage: &[(String, String)]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for value in instruction(stage, "ENV") {
        for pair in value.split_whitespace() {
            let (key, value) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV without key=value: {pair}"));
            env.insert(key.to_string(), value.to_string());
        }
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_command_starts_on_environment_alone_publishes_and_stops_on_sigterm() {
    let stages = dockerfile_stages();
    let image = stages.last().unwrap();
    let entrypoint = exec_form(instruction(image, "ENTRYPOINT")[0]);
    let cmd = exec_form(instruction(image, "CMD")[0]);
    assert_eq!(entrypoint, ["tron-actors"]);
    assert_eq!(cmd, ["run"]);
    let healthcheck = instruction(image, "HEALTHCHECK")[0];
    let health_cmd = exec_form(&healthcheck[healthcheck.find("CMD ").unwrap() + 4..]);
    assert_eq!(health_cmd[0], "tron-actors");

    let redis = TestRedis::start().await;
    let sim = frozen_sim(40, 10).await;
    let head = sim.chain().head();
    let from = head - 9;
    // The image's environment, then what `docker run -e` adds: the node, Redis, a first block,
    // and a free port instead of 9464 on this shared host (the address stays 0.0.0.0, as in the
    // image, so the health check's 0.0.0.0 -> 127.0.0.1 rule is exercised).
    let port = free_port().unwrap();
    let mut env = image_env(image);
    assert_eq!(
        env.get("TRON_ACTORS_METRICS__LISTEN").map(String::as_str),
        Some("0.0.0.0:9464")
    );
    env.insert(
        "TRON_ACTORS_METRICS__LISTEN".into(),
        format!("0.0.0.0:{port}"),
    );
    env.insert("TRON_ACTORS_NODE__URL".into(), sim.url());
    env.insert("TRON_ACTORS_REDIS__URL".into(), redis.url());
    env.insert("TRON_ACTORS_SYNC__START_BLOCK".into(), from.to_string());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();

    let mut daemon = Process::spawn(&args, &env);
    wait_ready(port).await;
    wait_done(&redis.store(), from, head, WAIT).await;

    // The HEALTHCHECK as Docker runs it: the same environment, its own arguments only.
    let health_args: Vec<&str> = health_cmd[1..].iter().map(String::as_str).collect();
    let health = output(&health_args, &env).await;
    assert_eq!(health.status.code(), Some(0), "{:?}", text(&health));
    assert_eq!(text(&health).0, "ok\n");

    let status = daemon.terminate().await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", daemon.stderr());
    assert!(daemon.stderr().contains("Stopped cleanly"));
    assert_exactly_once(&redis, &sim, from, head).await;

    // Once the daemon is gone the health check fails.
    let health = output(&health_args, &env).await;
    assert_eq!(health.status.code(), Some(1), "{:?}", text(&health));
}

#[tokio::test]
async fn help_lists_every_command_and_version_prints_the_version() {
    let help = output(&["--help"], &[]).await;
    assert_eq!(help.status.code(), Some(0));
    let (stdout, _) = text(&help);
    for command in ["run", "sim", "demo", "status", "dlq", "verify", "health"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} missing from:\n{stdout}"
        );
    }
    assert!(stdout.contains("--config <FILE>"));
    assert!(stdout.contains("Exit codes: 0"));
    let run_help = text(&output(&["run", "--help"], &[]).await).0;
    assert!(run_help.contains("--dry-run"), "{run_help}");
    let status_help = text(&output(&["status", "--help"], &[]).await).0;
    assert!(status_help.contains("--json"), "{status_help}");
    let version = output(&["--version"], &[]).await;
    assert_eq!(
        text(&version).0,
        format!("tron-actors {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// Asserts `args` followed by `--help` is accepted: the subcommand and every flag exist.
async fn assert_real_command(args: &[String], context: &str) {
    let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let out = output(&with_help, &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{context}: `tron-actors {}` is not a real command: {:?}",
        args.join(" "),
        text(&out)
    );
}

#[tokio::test]
async fn the_dockerfile_builds_the_binary_runs_it_unprivileged_and_checks_health_without_curl() {
    let stages = dockerfile_stages();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, image) = (&stages[0], &stages[1]);
    assert!(instruction(build, "FROM")[0].starts_with("rust:"));
    assert!(instruction(image, "FROM")[0].starts_with("debian:"));
    // Dependencies are built before the sources are copied (the cached layer).
    let steps: Vec<&str> = build
        .iter()
        .filter_map(|(k, v)| match k.as_str() {
            "COPY" if v.starts_with("src ") => Some("copy sources"),
            "RUN" if v.contains("cargo build") => Some("build"),
            _ => None,
        })
        .collect();
    assert_eq!(steps, ["build", "copy sources", "build"]);
    // Everything the build copies exists and is not excluded by .dockerignore.
    let ignored: Vec<String> = std::fs::read_to_string(repo(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    for copy in instruction(build, "COPY") {
        let parts: Vec<&str> = copy.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                repo(source).exists(),
                "COPY {source}: not in the repository"
            );
            let top = source.split('/').next().unwrap();
            assert!(
                !ignored.iter().any(|i| i == top || i == *source),
                "COPY {source}: excluded by .dockerignore"
            );
        }
    }
    assert!(ignored.iter().any(|i| i == "target"));

    let user = instruction(image, "USER");
    assert_eq!(user, ["10001:10001"]);
    assert_eq!(
        exec_form(instruction(image, "ENTRYPOINT")[0]),
        ["tron-actors"]
    );
    assert_eq!(exec_form(instruction(image, "CMD")[0]), ["run"]);
    let env = image_env(image);
    assert_eq!(instruction(image, "EXPOSE"), ["9464"]);
    // The built-in default binds this host only; the image must open it to the published port.
    assert_eq!(
        tron_actors::config::Config::default().metrics.listen,
        "127.0.0.1:9464".parse().ok()
    );
    assert_eq!(env["TRON_ACTORS_METRICS__LISTEN"], "0.0.0.0:9464");
    assert!(env.keys().all(|k| k.starts_with("TRON_ACTORS_")), "{env:?}");
    let labels = instruction(image, "LABEL").join(" ");
    for label in [
        "org.opencontainers.image.title",
        "org.opencontainers.image.version",
        "org.opencontainers.image.licenses",
    ] {
        assert!(labels.contains(label), "label {label} missing");
    }
    assert!(labels.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))));
    let healthcheck = instruction(image, "HEALTHCHECK")[0];
    let health = exec_form(&healthcheck[healthcheck.find("CMD ").unwrap() + 4..]);
    assert_eq!(health, ["tron-actors", "health"]);
    assert_real_command(&health[1..], "HEALTHCHECK").await;
    assert!(
        stages.iter().flatten().all(|(_, v)| !v.contains("curl")),
        "the image must not need curl"
    );

    // `docker run tron-actors --help`: the entrypoint with --help prints the help.
    let help = output(&["--help"], &[]).await;
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help).0.contains("Usage: tron-actors"));
}

fn yaml(path: &str) -> serde_norway::Value {
    serde_norway::from_str(&std::fs::read_to_string(repo(path)).unwrap())
        .unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
}

/// A compose value with any `!override`/`!reset` tag taken off.
fn untag(value: &serde_norway::Value) -> &serde_norway::Value {
    match value {
        serde_norway::Value::Tagged(tagged) => &tagged.value,
        other => other,
    }
}

fn strings(value: &serde_norway::Value) -> Vec<String> {
    untag(value)
        .as_sequence()
        .unwrap_or_else(|| panic!("not a list: {value:?}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn environment(service: &serde_norway::Value) -> BTreeMap<String, String> {
    untag(&service["environment"])
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let value = match v {
                serde_norway::Value::String(s) => s.clone(),
                other => panic!("environment values must be quoted strings: {other:?}"),
            };
            (k.as_str().unwrap().to_string(), value)
        })
        .collect()
}

/// The daemon's environment is a valid configuration: `run --dry-run` gets past the config
/// (prints "configuration: valid") and fails only on reaching the hosts. The node and Redis are
/// moved to closed local ports with the same scheme, so no test ever reaches TronGrid or a Redis
/// it does not own.
async fn assert_valid_config(env: &BTreeMap<String, String>, file: &str) {
    let mut env = env.clone();
    for key in ["TRON_ACTORS_NODE__URL", "TRON_ACTORS_REDIS__URL"] {
        if let Some(url) = env.get_mut(key) {
            let scheme = url.split("://").next().unwrap().to_string();
            *url = format!("{scheme}://127.0.0.1:{}", free_port().unwrap());
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = output(&["run", "--dry-run"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{file}: {stdout}\n{stderr}");
    assert!(
        stdout.starts_with("configuration: valid"),
        "{file}: {stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn the_compose_files_use_only_public_images_real_commands_and_real_config_keys() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "redis",
            "jaeger",
            "node",
            "tron-actors",
            "tron-actors-2",
            "prometheus",
            "grafana"
        ]
    );
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let image = service["image"].as_str().unwrap_or_default();
        let ours = service.get("build").and_then(|b| b.as_str()) == Some(".");
        let public = [
            "redis:",
            "jaegertracing/",
            "prom/prometheus:",
            "grafana/grafana:",
        ]
        .iter()
        .any(|p| image.starts_with(p));
        assert!(
            public || (ours && image == "tron-actors:local"),
            "{name}: image {image:?}"
        );
        if ours {
            assert_real_command(&strings(&service["command"]), name).await;
        }
        if let Some(test) = service.get("healthcheck").map(|h| strings(&h["test"])) {
            assert_eq!(test[0], "CMD", "{name}");
            if ours {
                assert_eq!(test[1], "tron-actors", "{name}");
                assert_real_command(&test[2..], name).await;
            }
        }
        if let Some(depends) = service.get("depends_on").and_then(|d| d.as_mapping()) {
            for dependency in depends.keys() {
                assert!(
                    services.contains_key(dependency),
                    "{name} depends on {dependency:?}"
                );
            }
        }
    }
    let redis = &services["redis"];
    let command = strings(&redis["command"]);
    let aof = command.iter().position(|a| a == "--appendonly").unwrap();
    assert_eq!(command[aof + 1], "yes");
    assert_eq!(
        strings(&redis["healthcheck"]["test"]),
        ["CMD", "redis-cli", "ping"]
    );

    let daemon = &services["tron-actors"];
    assert_eq!(strings(&daemon["command"]), ["run"]);
    let env = environment(daemon);
    assert_eq!(env["TRON_ACTORS_NODE__URL"], "http://node:8090");
    assert_eq!(env["TRON_ACTORS_REDIS__URL"], "redis://redis:6379");
    assert_eq!(env["TRON_ACTORS_OTEL__ENDPOINT"], "http://jaeger:4317");
    let sim = strings(&services["node"]["command"]);
    assert!(
        sim.windows(2).any(|w| w == ["--listen", "0.0.0.0:8090"]),
        "{sim:?}"
    );
    assert_eq!(strings(&daemon["ports"]), ["9464:9464"]);
    // The port is published: the daemon must listen on the container's every interface.
    assert_eq!(env["TRON_ACTORS_METRICS__LISTEN"], "0.0.0.0:9464");
    assert_valid_config(&env, "docker-compose.yml").await;

    // The second instance (profile two-instances): same Redis and node, its own instance id.
    let second = &services["tron-actors-2"];
    assert_eq!(strings(&second["profiles"]), ["two-instances"]);
    assert_eq!(strings(&second["command"]), ["run"]);
    let env2 = environment(second);
    assert_eq!(
        env2["TRON_ACTORS_REDIS__URL"],
        env["TRON_ACTORS_REDIS__URL"]
    );
    assert_eq!(env2["TRON_ACTORS_NODE__URL"], env["TRON_ACTORS_NODE__URL"]);
    assert_eq!(env["TRON_ACTORS_INSTANCE__ID"], "tron-actors-1");
    assert_eq!(env2["TRON_ACTORS_INSTANCE__ID"], "tron-actors-2");
    assert_eq!(env2["TRON_ACTORS_METRICS__LISTEN"], "0.0.0.0:9464");
    assert_valid_config(&env2, "docker-compose.yml (tron-actors-2)").await;

    assert_monitoring(services);

    // The TronGrid override: no simulated node, the key from the environment.
    let trongrid = yaml("docker-compose.trongrid.yml");
    let overrides = trongrid["services"].as_mapping().unwrap();
    assert!(overrides.keys().all(|k| services.contains_key(k)));
    assert_eq!(strings(&overrides["node"]["profiles"]), ["sim"]);
    let daemon = &overrides["tron-actors"];
    let depends = untag(&daemon["depends_on"]).as_mapping().unwrap();
    assert!(!depends.contains_key("node"));
    let mut env = environment(daemon);
    assert_eq!(env["TRON_ACTORS_NODE__URL"], "https://api.trongrid.io");
    let key = &env["TRON_ACTORS_NODE__API_KEY"];
    assert!(key.starts_with("${TRONGRID_API_KEY:?"), "{key}");
    assert!(!env.contains_key("TRON_ACTORS_SYNC__START_BLOCK"));
    // `!override` replaces the whole environment: the listen address must be there again.
    assert_eq!(env["TRON_ACTORS_METRICS__LISTEN"], "0.0.0.0:9464");
    // What compose substitutes.
    env.insert(
        "TRON_ACTORS_NODE__API_KEY".into(),
        "key-from-the-environment".into(),
    );
    assert_valid_config(&env, "docker-compose.trongrid.yml").await;
}

/// The host side of a `./host:/container[:ro]` volume whose container side is `target`.
fn mounted(service: &serde_norway::Value, target: &str) -> String {
    strings(&service["volumes"])
        .iter()
        .find_map(|v| {
            let mut parts = v.split(':');
            let (host, container) = (parts.next()?, parts.next()?);
            (container == target).then(|| host.trim_start_matches("./").to_string())
        })
        .unwrap_or_else(|| panic!("nothing mounted at {target}"))
}

/// Prometheus scrapes every daemon of the compose file on its metrics port; Grafana gets that
/// Prometheus as the datasource the dashboard's panels name, and the dashboard itself.
fn assert_monitoring(services: &serde_norway::Mapping) {
    let prometheus = &services["prometheus"];
    let config = yaml(&mounted(prometheus, "/etc/prometheus/prometheus.yml"));
    let targets: Vec<String> = config["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().unwrap().iter())
        .flat_map(|c| strings(&c["targets"]))
        .collect();
    assert_eq!(targets, ["tron-actors:9464", "tron-actors-2:9464"]);
    for target in &targets {
        let (host, port) = target.split_once(':').unwrap();
        let daemon = &services[host];
        assert_eq!(strings(&daemon["command"]), ["run"], "{target}");
        assert!(
            strings(&daemon["ports"])
                .iter()
                .any(|p| p.ends_with(&format!(":{port}"))),
            "{target}: the daemon's metrics port"
        );
    }
    assert_eq!(strings(&prometheus["ports"]), ["9090:9090"]);

    let grafana = &services["grafana"];
    let provisioning = mounted(grafana, "/etc/grafana/provisioning");
    let datasources = yaml(&format!("{provisioning}/datasources/prometheus.yml"));
    let source = &datasources["datasources"][0];
    assert_eq!(source["type"].as_str(), Some("prometheus"));
    assert_eq!(source["url"].as_str(), Some("http://prometheus:9090"));
    let providers = yaml(&format!("{provisioning}/dashboards/tron-actors.yml"));
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let dashboards = mounted(grafana, path);
    let text = std::fs::read_to_string(repo(&format!("{dashboards}/tron-actors.json"))).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let uid = source["uid"].as_str().unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"], uid, "{}", panel["title"]);
    }
    let home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].clone();
    assert_eq!(home, format!("{path}/tron-actors.json"));
}

#[tokio::test]
async fn the_systemd_unit_runs_the_daemon_restarts_it_on_failure_and_reads_a_valid_environment() {
    let unit = std::fs::read_to_string(repo("deploy/tron-actors.service")).unwrap();
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect()
    };
    assert_eq!(get("ExecStart"), ["/usr/local/bin/tron-actors run"]);
    assert_real_command(&["run".to_string()], "ExecStart").await;
    assert_eq!(get("Restart"), ["on-failure"]);
    // Exit 2 (a configuration refused) is not retried: see EXIT_CONFIG in main.rs.
    assert_eq!(get("RestartPreventExitStatus"), ["2"]);
    assert_eq!(get("KillSignal"), ["SIGTERM"]);
    assert_eq!(get("EnvironmentFile"), ["/etc/tron-actors/tron-actors.env"]);
    for hardening in [
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "DynamicUser",
    ] {
        assert_eq!(get(hardening).len(), 1, "{hardening} missing");
    }
    // The example environment file holds only real keys with valid values.
    let example = std::fs::read_to_string(repo("deploy/tron-actors.env.example")).unwrap();
    let env: BTreeMap<String, String> = example
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    assert!(env.contains_key("TRON_ACTORS_NODE__API_KEY"));
    // On a host, the operations server stays on this machine unless the operator opens it.
    assert_eq!(env["TRON_ACTORS_METRICS__LISTEN"], "127.0.0.1:9464");
    assert_valid_config(&env, "deploy/tron-actors.env.example").await;
}
