//! `tron-actors health [--ready] [--url URL]`: one HTTP GET to a running daemon's operations
//! server, so a container image needs no curl for its HEALTHCHECK.
use super::{load_config, CliError};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub(crate) struct HealthArgs {
    /// Ask /readyz (Redis and the node reachable, the actor tree running) instead of /healthz.
    #[arg(long)]
    pub ready: bool,
    /// The URL to ask instead of http://<metrics.listen>/healthz (0.0.0.0 means this host).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    pub timeout_ms: u64,
}

/// The URL of the daemon's own endpoint, from `metrics.listen`: a wildcard address is asked on
/// loopback, as the check runs on the same host (or in the same container).
pub(crate) fn local_url(listen: Option<SocketAddr>, path: &str) -> Option<String> {
    let addr = listen?;
    let host = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    Some(format!("http://{host}:{}{path}", addr.port()))
}

pub(crate) async fn run(config_file: Option<PathBuf>, args: HealthArgs) -> Result<(), CliError> {
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let url = match args.url {
        Some(url) => url,
        None => {
            let config = load_config(config_file)?;
            local_url(config.metrics.listen, path).ok_or_else(|| {
                CliError::Refused(
                    "metrics.listen = \"\": no operations server to ask (set it, e.g. 0.0.0.0:9464, or give --url)"
                        .to_string(),
                )
            })?
        }
    };
    tron_actors::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms))
        .build()
        .map_err(|error| CliError::Failed(format!("cannot build an HTTP client: {error}")))?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|error| CliError::Unhealthy(format!("{url}: {error}")))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(CliError::Unhealthy(format!(
            "{url} answered {status}: {}",
            body.trim()
        )));
    }
    print!("{body}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::local_url;

    #[test]
    fn wildcard_addresses_are_asked_on_loopback() {
        assert_eq!(
            local_url("0.0.0.0:9464".parse().ok(), "/healthz").as_deref(),
            Some("http://127.0.0.1:9464/healthz")
        );
        assert_eq!(
            local_url("[::]:9464".parse().ok(), "/readyz").as_deref(),
            Some("http://[::1]:9464/readyz")
        );
        assert_eq!(
            local_url("10.0.0.5:80".parse().ok(), "/healthz").as_deref(),
            Some("http://10.0.0.5:80/healthz")
        );
        assert_eq!(local_url(None, "/healthz"), None);
    }
}
