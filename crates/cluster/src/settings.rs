//! `kumo.configure_redis_throttles{...}`: the parameters of KumoMTA's
//! `redis.open`, checked.

use std::time::Duration;

#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user][:password@]host[:port][/db]`.
    pub url: String,
    /// For servers whose URL carries no credentials.
    pub username: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    /// How long one decision may take before the caller treats Redis as
    /// unavailable.
    pub response_timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

/// The URL without a password, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:<redacted>{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: String::new(),
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_millis(100),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        let s = RedisSettings {
            url: "redis://app:hunter2@127.0.0.1:6379/".into(),
            password: Some("hunter3".into()),
            ..Default::default()
        };
        let d = format!("{s:?}");
        assert!(!d.contains("hunter"), "{d}");
        assert!(d.contains("app:<redacted>@127.0.0.1"), "{d}");
    }
}
