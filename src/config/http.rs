//! `[http]`: the HTTP intake (the dashboard's API and the form page), `/healthz` and
//! `/metrics`; served by `crate::http`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{self, KeySource};

/// `[http]`: the dashboard's API, the form page, `/healthz` and `/metrics` (`crate::http`).
/// The server runs inside `supportd run` when `listen` is set; the link secret alone serves
/// `supportd http sign-link` on a machine that runs no server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to serve on, e.g. "127.0.0.1:8025" (port 0: any free port, logged).
    pub listen: Option<std::net::SocketAddr>,
    /// Serve `/healthz` and `/metrics` here instead of on `listen`.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The bearer token of `POST /api/v1/requests`: a file holding it...
    pub api_token_file: Option<PathBuf>,
    /// ... or the name of an environment variable holding it. Without either the API is off.
    pub api_token_env: Option<String>,
    /// The secret shared with the dashboard that signs account links: a file holding it...
    pub link_secret_file: Option<PathBuf>,
    /// ... or the name of an environment variable holding it. Without either no link is valid
    /// and the form page only points to the dashboard and the support address.
    pub link_secret_env: Option<String>,
    /// Where customers reach the server (e.g. "https://support.example.com"), for the links
    /// `supportd http sign-link` prints; default `http://<listen>`.
    pub public_url: Option<String>,
    /// Requests one address may file per rolling hour, API and form together (then 429).
    #[serde(default = "default_requests_per_hour")]
    pub requests_per_hour: u32,
    /// `/healthz` fails when the mailbox had no successful fetch for this long.
    #[serde(default = "default_max_fetch_age", with = "values::duration_text")]
    pub max_fetch_age: Duration,
    /// `/healthz` fails when mail has waited this long in the outbox.
    #[serde(default = "default_outbox_stuck_after", with = "values::duration_text")]
    pub outbox_stuck_after: Duration,
}

impl HttpConfig {
    /// Where the API token comes from, if configured.
    pub fn api_token(&self) -> Option<KeySource> {
        KeySource::from_keys(self.api_token_file.as_ref(), self.api_token_env.as_ref())
    }

    /// Where the link secret comes from, if configured.
    pub fn link_secret(&self) -> Option<KeySource> {
        KeySource::from_keys(
            self.link_secret_file.as_ref(),
            self.link_secret_env.as_ref(),
        )
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        for (file, env, what) in [
            (&self.api_token_file, &self.api_token_env, "api_token"),
            (&self.link_secret_file, &self.link_secret_env, "link_secret"),
        ] {
            if file.is_some() && env.is_some() {
                return Err(format!(
                    "http.{what}_file and http.{what}_env are both set: keep one"
                ));
            }
        }
        if self.requests_per_hour == 0 {
            return Err("http.requests_per_hour must be at least 1".into());
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "http.public_url {url:?} must start with http:// or https://"
            ));
        }
        Ok(())
    }
}

fn default_requests_per_hour() -> u32 {
    10
}
fn default_max_fetch_age() -> Duration {
    Duration::from_mins(15)
}
fn default_outbox_stuck_after() -> Duration {
    Duration::from_mins(30)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    const MINIMAL: &str = "[support]\naddress = \"support@example.test\"\n";

    #[test]
    fn the_http_section_resolves_its_files_and_refuses_two_sources() {
        let text = format!(
            "{MINIMAL}[http]\nlisten = \"127.0.0.1:8025\"\napi_token_file = \"token\"\n\
             link_secret_env = \"LINK_SECRET\"\n"
        );
        let c = Config::from_toml(&text, Path::new("/etc/supportd")).unwrap();
        let http = c.http.unwrap();
        assert_eq!(http.listen, Some("127.0.0.1:8025".parse().unwrap()));
        assert_eq!(http.requests_per_hour, 10);
        assert_eq!(http.max_fetch_age, Duration::from_mins(15));
        assert!(
            matches!(http.api_token(), Some(KeySource::File(p)) if p == Path::new("/etc/supportd/token"))
        );
        assert!(matches!(http.link_secret(), Some(KeySource::Env(v)) if v == "LINK_SECRET"));
        let text = format!("{MINIMAL}[http]\napi_token_file = \"t\"\napi_token_env = \"T\"\n");
        let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert!(
            err.contains("http.api_token_file and http.api_token_env"),
            "{err}"
        );
        let text = format!("{MINIMAL}[http]\nlisten = \"localhost\"\n");
        let err = Config::from_toml(&text, Path::new(".")).unwrap_err();
        assert!(err.contains("listen"), "{err}");
        let no_server = Config::from_toml(MINIMAL, Path::new(".")).unwrap();
        assert!(no_server.http.is_none());
    }
}
