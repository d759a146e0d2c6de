//! SASL PLAIN (RFC 4616) and LOGIN decoding for inbound AUTH (RFC 4954).

use crate::reply::Reply;

/// Credentials from a client. The password is kept out of Debug output.
pub struct Credentials {
    pub authz: String,
    pub authc: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("authz", &self.authz)
            .field("authc", &self.authc)
            .field("password", &"[redacted]")
            .finish()
    }
}

pub fn cancelled() -> Reply {
    Reply::new(501, "5.7.0", "Authentication cancelled")
}

fn bad_base64() -> Reply {
    Reply::new(501, "5.5.2", "Invalid base64 data")
}

/// Decode one client response line. `*` cancels the exchange.
pub fn decode_response(line: &str) -> Result<Vec<u8>, Reply> {
    let line = line.trim();
    if line == "*" {
        return Err(cancelled());
    }
    if line == "=" {
        return Ok(Vec::new());
    }
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| bad_base64())
}

fn utf8(b: &[u8]) -> Result<String, Reply> {
    String::from_utf8(b.to_vec()).map_err(|_| Reply::new(501, "5.5.2", "Credentials must be UTF-8"))
}

/// `authzid NUL authcid NUL passwd`. An empty authzid means "same as
/// authcid" and is returned as such.
pub fn parse_plain(decoded: &[u8]) -> Result<Credentials, Reply> {
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authz), Some(authc), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reply::new(501, "5.5.2", "Malformed PLAIN credentials"));
    };
    let authc = utf8(authc)?;
    if authc.is_empty() {
        return Err(Reply::new(501, "5.5.2", "Malformed PLAIN credentials"));
    }
    let authz = utf8(authz)?;
    Ok(Credentials {
        authz: if authz.is_empty() {
            authc.clone()
        } else {
            authz
        },
        authc,
        password: utf8(password)?,
    })
}

pub const LOGIN_USERNAME_PROMPT: &str = "VXNlcm5hbWU6";
pub const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// LOGIN has no separate authorization identity.
pub fn login_credentials(user: &[u8], password: &[u8]) -> Result<Credentials, Reply> {
    let authc = utf8(user)?;
    if authc.is_empty() {
        return Err(Reply::new(501, "5.5.2", "Empty user name"));
    }
    Ok(Credentials {
        authz: authc.clone(),
        authc,
        password: utf8(password)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let c = parse_plain(&decode_response("AHNjb3R0AHRpZ2Vy").unwrap()).unwrap();
        assert_eq!(
            (c.authz.as_str(), c.authc.as_str(), c.password.as_str()),
            ("scott", "scott", "tiger")
        );
        let c = parse_plain(b"admin\0scott\0tiger").unwrap();
        assert_eq!(c.authz, "admin");
        assert!(!format!("{c:?}").contains("tiger"));
        assert_eq!(decode_response("*").unwrap_err().code, 501);
        assert_eq!(decode_response("!!!").unwrap_err().enhanced, "5.5.2");
        assert!(parse_plain(b"scott\0tiger").is_err());
        assert!(parse_plain(b"\0\0tiger").is_err());
    }
}
