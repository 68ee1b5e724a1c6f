//! Managed Redis: a private redis-server speaking TLS (a CA and a server certificate made with
//! `openssl` for the test) with an ACL user. The daemon is exact through it with `redis.ca_file`
//! and `redis.password_file`; a wrong CA and a wrong password are refused at start (exit 2),
//! naming the keys to check, and no password is ever shown.
#![allow(clippy::unwrap_used)]

mod common;

use common::cli::{output, text};
use common::{assert_exactly_once, frozen_sim, start_daemon, test_config, wait_done, TestRedis};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tron_actors::tools::local_redis::{free_port, LocalRedis, Persistence};

const WAIT: Duration = Duration::from_secs(120);
const USER: &str = "tron";
const PASSWORD: &str = "s3cret-Pa55word";

/// Runs openssl with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>.crt`, `<name>.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(format!("{name}.crt"))
}

/// `server.crt` and `server.key` for 127.0.0.1 and localhost, signed by the CA `ca`.
fn make_server_cert(dir: &Path, ca: &str) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// A private redis-server with a TLS port (certificate signed by `ca.crt`) beside its plain
/// one (for the test's own reads), and the ACL user `tron`.
struct TlsRedis {
    redis: TestRedis,
    tls_port: u16,
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// A CA that did not.
    wrong_ca: PathBuf,
    certs: tempfile::TempDir,
}

impl TlsRedis {
    async fn start() -> TlsRedis {
        let certs = tempfile::tempdir().unwrap();
        let ca = make_ca(certs.path(), "ca");
        let wrong_ca = make_ca(certs.path(), "other-ca");
        make_server_cert(certs.path(), "ca");
        let tls_port = free_port().unwrap();
        let file = |name: &str| certs.path().join(name).display().to_string();
        let args = [
            "--tls-port".to_string(),
            tls_port.to_string(),
            "--tls-cert-file".to_string(),
            file("server.crt"),
            "--tls-key-file".to_string(),
            file("server.key"),
            "--tls-ca-cert-file".to_string(),
            file("ca.crt"),
            "--tls-auth-clients".to_string(),
            "no".to_string(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let server =
            LocalRedis::start_with_args(dir.path(), free_port().unwrap(), Persistence::None, &args)
                .await
                .unwrap();
        let redis = TestRedis { server, dir };
        let mut conn = redis.conn().await;
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(USER)
            .arg("on")
            .arg(format!(">{PASSWORD}"))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        TlsRedis {
            redis,
            tls_port,
            ca,
            wrong_ca,
            certs,
        }
    }

    fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port)
    }

    /// A password file as an editor writes it: with a trailing newline.
    fn password_file(&self, password: &str) -> PathBuf {
        let path = self
            .certs
            .path()
            .join(format!("password-{}", password.len()));
        std::fs::write(&path, format!("{password}\n")).unwrap();
        path
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_is_exact_over_tls_with_a_private_ca_and_an_acl_user() {
    let tls = TlsRedis::start().await;
    let sim = frozen_sim(400, 10).await;
    let head = sim.chain().head();
    let from = head - 150;
    let ca = tls.ca.display().to_string();
    let password_file = tls.password_file(PASSWORD).display().to_string();
    let start_block = from.to_string();
    let config = test_config(
        &sim.url(),
        &tls.tls_url(),
        &[
            ("redis.ca_file", ca.as_str()),
            ("redis.username", USER),
            ("redis.password_file", password_file.as_str()),
            ("sync.start_block", start_block.as_str()),
        ],
    );
    // Read from the file without its newline, and never shown.
    assert!(!format!("{config:?}").contains(PASSWORD));
    let daemon = start_daemon(&config).await;
    let store = daemon.store.clone();
    wait_done(&store, from, head, WAIT).await;

    // The daemon's connections are the ACL user's, on the TLS port.
    let mut conn = tls.redis.conn().await;
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let laddr = format!("laddr=127.0.0.1:{}", tls.tls_port);
    assert!(
        clients
            .lines()
            .any(|line| line.contains(&format!("user={USER} ")) && line.contains(&laddr)),
        "no client of user {USER} on the TLS port:\n{clients}"
    );
    daemon.shutdown().await.unwrap();
    assert_exactly_once(&tls.redis, &sim, from, head).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_at_start_naming_redis_ca_file() {
    let tls = TlsRedis::start().await;
    let sim = frozen_sim(10, 1).await;
    let url = sim.url();
    let redis_url = tls.tls_url();
    let wrong_ca = tls.wrong_ca.display().to_string();
    let env = [
        ("TRON_ACTORS_NODE__URL", url.as_str()),
        ("TRON_ACTORS_REDIS__URL", redis_url.as_str()),
        ("TRON_ACTORS_REDIS__CA_FILE", wrong_ca.as_str()),
        ("TRON_ACTORS_METRICS__LISTEN", ""),
    ];
    for args in [&["run"][..], &["run", "--dry-run"][..]] {
        let refused = output(args, &env).await;
        let (stdout, stderr) = text(&refused);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{args:?}: {stdout}\n{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "error: redis at {redis_url}: the TLS handshake with Redis failed"
            )),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("UnknownIssuer"), "{args:?}: {stderr}");
        assert!(stderr.contains("check redis.ca_file"), "{args:?}: {stderr}");
    }
    // With the right CA the same start is ready.
    let ca = tls.ca.display().to_string();
    let mut env = env.to_vec();
    env[2] = ("TRON_ACTORS_REDIS__CA_FILE", ca.as_str());
    let ready = output(&["run", "--dry-run"], &env).await;
    let (stdout, stderr) = text(&ready);
    assert_eq!(ready.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("TLS, CA {ca}, user default, no password")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_at_start_and_no_password_is_ever_shown() {
    let tls = TlsRedis::start().await;
    let sim = frozen_sim(10, 1).await;
    let url = sim.url();
    let redis_url = tls.tls_url();
    let ca = tls.ca.display().to_string();
    let wrong = "not-the-Pa55word";
    let wrong_file = tls.password_file(wrong).display().to_string();
    let env = [
        ("TRON_ACTORS_NODE__URL", url.as_str()),
        ("TRON_ACTORS_REDIS__URL", redis_url.as_str()),
        ("TRON_ACTORS_REDIS__CA_FILE", ca.as_str()),
        ("TRON_ACTORS_REDIS__USERNAME", USER),
        ("TRON_ACTORS_REDIS__PASSWORD_FILE", wrong_file.as_str()),
        ("TRON_ACTORS_METRICS__LISTEN", ""),
    ];
    for args in [&["run"][..], &["run", "--dry-run"][..], &["status"][..]] {
        let refused = output(args, &env).await;
        let (stdout, stderr) = text(&refused);
        let expected_code = if args == ["status"] { 1 } else { 2 };
        assert_eq!(
            refused.status.code(),
            Some(expected_code),
            "{args:?}: {stdout}\n{stderr}"
        );
        let all = format!("{stdout}\n{stderr}");
        assert!(
            all.contains("Redis refused the credentials"),
            "{args:?}: {all}"
        );
        assert!(
            all.contains("Password authentication failed"),
            "{args:?}: {all}"
        );
        assert!(
            all.contains("check redis.username and redis.password"),
            "{args:?}: {all}"
        );
        assert!(
            !all.contains(wrong),
            "{args:?}: the password is shown: {all}"
        );
    }

    // The right password in the URL: it works, and is shown as ***.
    let with_password = format!("rediss://{USER}:{PASSWORD}@127.0.0.1:{}", tls.tls_port);
    let env = [
        ("TRON_ACTORS_NODE__URL", url.as_str()),
        ("TRON_ACTORS_REDIS__URL", with_password.as_str()),
        ("TRON_ACTORS_REDIS__CA_FILE", ca.as_str()),
        ("TRON_ACTORS_METRICS__LISTEN", ""),
    ];
    for args in [
        &["run", "--dry-run"][..],
        &["status"][..],
        &["status", "--json"][..],
    ] {
        let ready = output(args, &env).await;
        let (stdout, stderr) = text(&ready);
        assert_eq!(ready.status.code(), Some(0), "{args:?}: {stdout}\n{stderr}");
        let all = format!("{stdout}\n{stderr}");
        assert!(
            all.contains(&format!("rediss://{USER}:***@127.0.0.1:{}", tls.tls_port)),
            "{args:?}: {all}"
        );
        assert!(
            !all.contains(PASSWORD),
            "{args:?}: the password is shown: {all}"
        );
    }

    // A password given twice is a configuration error naming both keys.
    let password_file = tls.password_file(PASSWORD).display().to_string();
    let twice = output(
        &["run", "--dry-run"],
        &[
            ("TRON_ACTORS_REDIS__PASSWORD", PASSWORD),
            ("TRON_ACTORS_REDIS__PASSWORD_FILE", password_file.as_str()),
        ],
    )
    .await;
    let (stdout, stderr) = text(&twice);
    assert_eq!(twice.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("redis.password and redis.password_file are both set"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}
