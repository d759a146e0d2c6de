use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One authentication result (RFC 8601 `resinfo`), as KumoMTA's
/// `authenticationresult` object: `dkim=pass header.d=example.com`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResult {
    /// `spf`, `dkim`, `dmarc`, `arc`, `iprev`, `auth`.
    pub method: String,
    #[serde(default)]
    pub method_version: Option<u32>,
    /// `pass`, `fail`, `none`, `neutral`, `softfail`, `temperror`,
    /// `permerror`, `policy`.
    pub result: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// `header.d`, `smtp.mailfrom`, `policy.dmarc`, ...
    #[serde(default)]
    pub props: BTreeMap<String, String>,
}
