//! A real Vault-compatible server for tests: rusty_vault's `rvault` binary,
//! started with file storage in a temporary directory on a free loopback
//! port, initialised (one unseal key) and unsealed through the HTTP API.
//!
//! What rusty_vault 0.2.1 does, found by experiment and from its source:
//!
//! - Its configuration is Vault's HCL (`storage "file" { path = ... }`,
//!   `listener "tcp" { address = ..., tls_disable = ... }`, plus `work_dir`
//!   and `log_level`; JSON works too).
//! - It has only a KV **version 1** engine (`type = "kv"`, options such as
//!   `version = 2` are ignored) and mounts it at `secret/` on
//!   initialisation. KV v1 stores whatever JSON body is written, under the
//!   path as given. So writing `{"data": {...}}` to `secret/data/<path>`,
//!   which is exactly the request Vault's KV v2 takes, makes a read of
//!   `/v1/secret/data/<path>` answer `{"data":{"data":{...}}, ...}`: the KV v2
//!   read shape. There is no `metadata` block and no versioning.
//! - A missing secret answers 404 with an empty body; a wrong token 403
//!   (`Permission denied.`), even for a path that does not exist; a sealed
//!   server 503.
//! - AppRole works: `sys/auth/approle` enables it; roles, `role-id`,
//!   `secret-id` and `login` behave like Vault's (login returns
//!   `auth.client_token` and `auth.lease_duration` = the role's
//!   `token_ttl`). ACL policies are not enforced (`sys/policy` is a stub),
//!   so any valid token can read any secret.
//! - `auth/token/renew-self` is not implemented (HTTP 500).
//!
//! The binary is found through `IRONPOST_RVAULT` (a path to the binary),
//! then `$IRONPOST_TOOLS/rvault/bin/rvault` (default
//! `~/.cache/ironpost-tools`, where `scripts/install-rvault.sh` puts it),
//! then `PATH`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::pki::TestCa;
use crate::tls::{client_config, TlsTrust};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `rvault` is, or an error that says how to install it.
pub fn rvault_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("IRONPOST_RVAULT").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        bail!(
            "IRONPOST_RVAULT={} is not an executable file; unset it or run scripts/install-rvault.sh",
            p.display()
        );
    }
    let tools = std::env::var_os("IRONPOST_TOOLS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/ironpost-tools")));
    let mut looked = Vec::new();
    if let Some(tools) = tools {
        let p = tools.join("rvault/bin/rvault");
        if is_executable(&p) {
            return Ok(p);
        }
        looked.push(p.display().to_string());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("rvault");
            if is_executable(&p) {
                return Ok(p);
            }
        }
    }
    looked.push("rvault on PATH".to_string());
    bail!(
        "rusty_vault's `rvault` binary is not installed (looked for {}). \
         Run scripts/install-rvault.sh first (it builds rusty_vault into \
         $IRONPOST_TOOLS/rvault, default ~/.cache/ironpost-tools/rvault), \
         or set IRONPOST_RVAULT to the binary's path.",
        looked.join(", ")
    )
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// AppRole credentials for one role.
pub struct AppRole {
    pub role_id: String,
    pub secret_id: String,
}

/// A running (or stopped, see [`VaultServer::stop`]) rusty_vault server.
/// Killed when dropped; its storage lives in a temporary directory.
pub struct VaultServer {
    /// The listener address (127.0.0.1 and a free port).
    pub addr: SocketAddr,
    root_token: String,
    unseal_key: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    log: PathBuf,
    ca_file: Option<PathBuf>,
    http: Http,
    child: Option<Child>,
}

/// How to reach the server's API.
struct Http {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl VaultServer {
    /// Starts a plain-HTTP server, initialised and unsealed.
    pub fn start() -> anyhow::Result<VaultServer> {
        Self::start_with(false)
    }

    /// Starts a server with HTTPS on its listener. Its certificate (for
    /// 127.0.0.1 and localhost) is issued by a test CA whose PEM is at
    /// [`VaultServer::ca_file`].
    pub fn start_tls() -> anyhow::Result<VaultServer> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> anyhow::Result<VaultServer> {
        let bin = rvault_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("ironpost-rvault-")
            .tempdir()?;
        let mut tls_files = None;
        let mut tls_client = None;
        let mut ca_file = None;
        if tls {
            let ca = TestCa::new("ironpost test Vault CA");
            let (cert, key) = ca.issue_server(&["127.0.0.1", "localhost"]);
            let (cert_file, key_file) = (
                dir.path().join("vault-cert.pem"),
                dir.path().join("vault-key.pem"),
            );
            let ca_path = dir.path().join("vault-ca.pem");
            std::fs::write(&cert_file, cert)?;
            std::fs::write(&key_file, key)?;
            std::fs::write(&ca_path, &ca.cert_pem)?;
            tls_client = Some(client_config(
                &TlsTrust::CaPem(ca.cert_pem.into_bytes()),
                None,
            )?);
            tls_files = Some((cert_file, key_file));
            ca_file = Some(ca_path);
        }
        let config = dir.path().join("rvault.hcl");
        let log = dir.path().join("rvault.log");

        // The port is chosen by binding and releasing it, so another process
        // may take it in between: try a few times.
        let mut attempt = 0;
        let (child, addr) = loop {
            attempt += 1;
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            std::fs::write(&config, hcl_config(dir.path(), addr, tls_files.as_ref()))?;
            let http = Http {
                addr,
                tls: tls_client.clone(),
            };
            match spawn_and_wait(&bin, dir.path(), &config, &log, &http) {
                Ok(child) => break (child, addr),
                Err(e) if attempt < 5 && e.addr_in_use => {}
                Err(e) => return Err(e.error),
            }
        };
        let mut server = VaultServer {
            addr,
            root_token: String::new(),
            unseal_key: String::new(),
            config,
            log,
            ca_file,
            http: Http {
                addr,
                tls: tls_client,
            },
            child: Some(child),
            dir,
        };
        server.initialise()?;
        Ok(server)
    }

    /// `sys/init` with one key share, `sys/unseal`, and a KV mount at
    /// `secret/` if the server has none.
    fn initialise(&mut self) -> anyhow::Result<()> {
        let init = self.expect_ok(
            "PUT",
            "sys/init",
            None,
            Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
        )?;
        self.unseal_key = init["keys"][0]
            .as_str()
            .ok_or_else(|| anyhow!("sys/init answered no keys: {init}"))?
            .to_string();
        self.root_token = init["root_token"]
            .as_str()
            .ok_or_else(|| anyhow!("sys/init answered no root_token"))?
            .to_string();
        self.unseal()?;
        let mounts = self.expect_ok("GET", "sys/mounts", Some(&self.root_token), None)?;
        if mounts.get("secret/").is_none() {
            self.mount_kv("secret")?;
        }
        Ok(())
    }

    /// `http://127.0.0.1:PORT`, or `https://...` for [`VaultServer::start_tls`].
    pub fn url(&self) -> String {
        let scheme = if self.http.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The CA bundle that verifies a TLS server's certificate.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The server's log so far (stdout and stderr).
    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }

    /// Mounts rusty_vault's KV engine at `mount` (KV v1; see the module
    /// comment for how KV v2-shaped reads work on it).
    pub fn mount_kv(&self, mount: &str) -> anyhow::Result<()> {
        let path = format!("sys/mounts/{}", mount.trim_matches('/'));
        self.expect_ok(
            "POST",
            &path,
            Some(&self.root_token),
            Some(&json!({"type": "kv"})),
        )?;
        Ok(())
    }

    /// Writes `data` (a JSON object) so that a KV v2 read of `secret/<path>`
    /// (`GET /v1/secret/data/<path>`) returns it as `data.data`.
    pub fn write_secret(&self, path: &str, data: Value) -> anyhow::Result<()> {
        self.write_secret_at("secret", path, data)
    }

    /// [`VaultServer::write_secret`] on another mount.
    pub fn write_secret_at(&self, mount: &str, path: &str, data: Value) -> anyhow::Result<()> {
        if !data.is_object() {
            bail!("a secret is a JSON object of fields, not {data}");
        }
        let path = format!(
            "{}/data/{}",
            mount.trim_matches('/'),
            path.trim_matches('/')
        );
        self.expect_ok(
            "POST",
            &path,
            Some(&self.root_token),
            Some(&json!({ "data": data })),
        )?;
        Ok(())
    }

    /// Enables the AppRole auth method at `auth/approle` (once).
    pub fn enable_approle(&self) -> anyhow::Result<()> {
        let auths = self.expect_ok("GET", "sys/auth", Some(&self.root_token), None)?;
        if auths.get("approle/").is_none() {
            self.expect_ok(
                "POST",
                "sys/auth/approle",
                Some(&self.root_token),
                Some(&json!({"type": "approle"})),
            )?;
        }
        Ok(())
    }

    /// Creates AppRole `role` (name of at least 3 word characters) whose
    /// tokens live `token_ttl` (e.g. "60s"), and returns its role ID and a
    /// new secret ID. Enables AppRole if needed.
    pub fn create_approle(&self, role: &str, token_ttl: &str) -> anyhow::Result<AppRole> {
        self.enable_approle()?;
        let base = format!("auth/approle/role/{role}");
        self.expect_ok(
            "POST",
            &base,
            Some(&self.root_token),
            Some(&json!({"token_ttl": token_ttl, "token_policies": ["default"]})),
        )?;
        let r = self.expect_ok(
            "GET",
            &format!("{base}/role-id"),
            Some(&self.root_token),
            None,
        )?;
        let role_id = r["data"]["role_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no role_id in the role-id answer"))?
            .to_string();
        let s = self.expect_ok(
            "POST",
            &format!("{base}/secret-id"),
            Some(&self.root_token),
            Some(&json!({})),
        )?;
        let secret_id = s["data"]["secret_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no secret_id in the secret-id answer"))?
            .to_string();
        Ok(AppRole { role_id, secret_id })
    }

    /// Seals the server: it keeps answering, with 503.
    pub fn seal(&self) -> anyhow::Result<()> {
        self.expect_ok("PUT", "sys/seal", Some(&self.root_token), None)?;
        Ok(())
    }

    pub fn unseal(&self) -> anyhow::Result<()> {
        let r = self.expect_ok(
            "PUT",
            "sys/unseal",
            None,
            Some(&json!({"key": self.unseal_key})),
        )?;
        if r["sealed"] != json!(false) {
            bail!("still sealed after sys/unseal: {r}");
        }
        Ok(())
    }

    /// Kills the server (an outage: connections are refused). Storage is
    /// kept for [`VaultServer::restart`].
    pub fn stop(&mut self) {
        self.kill();
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the server again on the same address and storage, and
    /// unseals it. Tokens and secrets written before survive.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let bin = rvault_binary()?;
        // The old listener's port may linger briefly after the kill.
        let deadline = Instant::now() + Duration::from_secs(10);
        let child = loop {
            match spawn_and_wait(&bin, self.dir.path(), &self.config, &self.log, &self.http) {
                Ok(child) => break child,
                Err(e) if e.addr_in_use && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e.error),
            }
        };
        self.child = Some(child);
        self.unseal()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One request to `/v1/<path>`; answers the status and the JSON body
    /// (`Null` when empty).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        self.http.request(method, path, token, body)
    }

    fn expect_ok(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.request(method, path, token, body)?;
        if !(200..300).contains(&status) {
            bail!("{method} /v1/{path}: HTTP {status} {v}");
        }
        Ok(v)
    }
}

impl Drop for VaultServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

struct SpawnError {
    error: anyhow::Error,
    /// The server exited because its port was taken.
    addr_in_use: bool,
}

impl From<anyhow::Error> for SpawnError {
    fn from(error: anyhow::Error) -> Self {
        SpawnError {
            error,
            addr_in_use: false,
        }
    }
}

impl From<std::io::Error> for SpawnError {
    fn from(error: std::io::Error) -> Self {
        anyhow::Error::from(error).into()
    }
}

/// Starts `rvault server` and waits until its API answers.
fn spawn_and_wait(
    bin: &Path,
    dir: &Path,
    config: &Path,
    log_path: &Path,
    http: &Http,
) -> Result<Child, SpawnError> {
    let log_start = std::fs::metadata(log_path)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    let log = File::options()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let mut child = Command::new(bin)
        .arg("server")
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = read_log(log_path);
            let new = text.get(log_start..).unwrap_or(&text);
            return Err(SpawnError {
                addr_in_use: new.contains("Address already in use"),
                error: anyhow!("rvault exited during start-up ({status}); log:\n{text}"),
            });
        }
        if let Ok((200, _)) = http.request("GET", "sys/init", None, None) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(anyhow!(
                "rvault did not answer on {} within {START_TIMEOUT:?}; log:\n{}",
                http.addr,
                read_log(log_path)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Http {
    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} /v1/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n",
            path.trim_start_matches('/'),
            self.addr,
            body.len()
        );
        if let Some(t) = token {
            req.push_str(&format!("X-Vault-Token: {t}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);

        let tcp = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        let raw = match &self.tls {
            None => exchange(tcp, req.as_bytes())?,
            Some(config) => {
                let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
                let conn = rustls::ClientConnection::new(config.clone(), name)?;
                exchange(rustls::StreamOwned::new(conn, tcp), req.as_bytes())?
            }
        };
        parse_response(&raw)
    }
}

fn hcl_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn hcl_config(dir: &Path, addr: SocketAddr, tls: Option<&(PathBuf, PathBuf)>) -> String {
    let listener = match tls {
        None => format!("  address = {}\n  tls_disable = true\n", hcl_string(&addr.to_string())),
        Some((cert, key)) => format!(
            "  address = {}\n  tls_disable = false\n  tls_cert_file = {}\n  tls_key_file = {}\n  tls_disable_client_certs = true\n",
            hcl_string(&addr.to_string()),
            hcl_string(&cert.to_string_lossy()),
            hcl_string(&key.to_string_lossy()),
        ),
    };
    format!(
        "storage \"file\" {{\n  path = {}\n}}\n\nlistener \"tcp\" {{\n{listener}}}\n\nwork_dir = {}\nlog_level = \"info\"\n",
        hcl_string(&dir.join("data").to_string_lossy()),
        hcl_string(&dir.join("work").to_string_lossy()),
    )
}

/// Writes the request and reads the whole response (the server closes the
/// connection after it, or the body is complete per Content-Length).
fn exchange<S: Read + Write>(mut s: S, req: &[u8]) -> anyhow::Result<Vec<u8>> {
    s.write_all(req)?;
    s.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(total) = complete_length(&buf) {
            if buf.len() >= total {
                buf.truncate(total);
                return Ok(buf);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return Ok(buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A TLS peer that closes without close_notify: keep what came.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {
                return Ok(buf)
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Header length plus Content-Length, once the headers are in.
fn complete_length(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .map(|n| end + n)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Value)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            anyhow!(
                "incomplete HTTP response: {:?}",
                String::from_utf8_lossy(raw)
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP status line: {head}"))?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    let v = if body.iter().all(|b| b.is_ascii_whitespace()) {
        Value::Null
    } else {
        serde_json::from_slice(&body).with_context(|| {
            format!(
                "HTTP {status}: body is not JSON: {}",
                String::from_utf8_lossy(&body)
            )
        })?
    };
    Ok((status, v))
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("bad chunked body"))?;
        let size_text = String::from_utf8_lossy(&b[..nl]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("bad chunk size")?;
        b = &b[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            bail!("truncated chunked body");
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}
