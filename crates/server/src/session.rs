//! One client connection: reads bytes, frames commands and DATA with the
//! wire crate, consults the policy where a decision needs it, stores
//! accepted messages, and writes replies (batched, so PIPELINING clients get
//! one write per batch).

use crate::auth;
use crate::conn::{Conn, ReadError};
use crate::listener::Services;
use crate::received;
use crate::reception::{refusal_reason, response, Arrival, Client, Source};
use crate::relay::{self, Verdict};
use crate::tls::TlsSource;
use ironpost_logs::{AuthRecord, MessageRecord, Record};
use ironpost_policy::{
    AuthDecision, CidrSet, ConnMeta, EsmtpListenerConfig, EventError, LineEndingPolicy,
};
use ironpost_wire::command;
use ironpost_wire::line::Next;
use ironpost_wire::reply::from_policy;
use ironpost_wire::sasl::{self, Credentials};
use ironpost_wire::{
    Action, Command, DataOptions, DataOutcome, DataReceiver, LineEndings, LineError, LineReader,
    Mailbox, Reply, ReversePath, Session, SessionConfig,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct ListenerRuntime {
    pub name: String,
    pub relay_hosts: CidrSet,
    pub hostname: String,
    pub tls: Arc<TlsSource>,
    pub cfg: EsmtpListenerConfig,
}

/// Protocol errors tolerated before the connection is dropped.
const MAX_ERRORS: usize = 20;
const WRITE_LIMIT: Duration = Duration::from_secs(60);
/// How long a received message waits for room in the memory budget before
/// it is refused `452 4.3.1`.
const BUDGET_WAIT: Duration = Duration::from_secs(30);

/// The session is over; the connection should be closed.
struct End;

struct Driver {
    conn: Conn,
    peer: SocketAddr,
    rt: Arc<ListenerRuntime>,
    svc: Services,
    buf: Vec<u8>,
    out: Vec<u8>,
    session: Session,
    lines: LineReader,
    tls: Option<(String, String)>,
    /// The client is in `relay_hosts`.
    trusted: bool,
    /// The current sender's listener domain lists the client in `relay_from`.
    relay_from_ok: bool,
    errors: usize,
    /// Commands since the last MAIL that moved no mail (NOOP, RSET, ...).
    idle_commands: usize,
    /// (authz_id, authn_id) after a successful AUTH.
    auth: Option<(String, String)>,
    /// Verified client certificate: (subject, SHA-256 fingerprint).
    client_cert: Option<(String, String)>,
    /// The connection's metadata, one object for the whole connection:
    /// what a policy sets on it in one event it reads in the next, and it
    /// is copied into each message's metadata.
    meta: ConnMeta,
}

pub async fn run_session(conn: Conn, peer: SocketAddr, rt: Arc<ListenerRuntime>, svc: Services) {
    let cfg = SessionConfig {
        hostname: rt.hostname.clone(),
        max_message_size: rt.cfg.max_message_size,
        max_recipients: rt.cfg.max_recipients_per_message,
        max_messages: rt.cfg.max_messages_per_connection,
        starttls: true,
        auth_mechanisms: if svc.policy.has_handler("smtp_server_auth_plain") {
            vec!["PLAIN".into(), "LOGIN".into()]
        } else {
            Vec::new()
        },
    };
    let mut d = Driver {
        conn,
        peer,
        trusted: rt.relay_hosts.contains(peer.ip()),
        rt,
        svc,
        buf: Vec::with_capacity(16 * 1024),
        out: Vec::with_capacity(1024),
        session: Session::new(cfg),
        lines: LineReader::new(),
        tls: None,
        relay_from_ok: false,
        errors: 0,
        idle_commands: 0,
        auth: None,
        client_cert: None,
        meta: ConnMeta::default(),
    };
    let _ = d.run().await;
    d.conn.shutdown().await;
}

impl Driver {
    fn queue(&mut self, reply: &Reply) {
        self.out.extend_from_slice(&reply.to_bytes());
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let result = self.conn.write_all(&out, WRITE_LIMIT).await;
        self.out = out;
        self.out.clear();
        result.map_err(|_| End)
    }

    async fn close_with(&mut self, reply: Reply) -> End {
        self.queue(&reply);
        let _ = self.flush().await;
        End
    }

    async fn timeout(&mut self, during: &str) -> End {
        tracing::debug!(peer = %self.peer, "timeout {during}");
        let r = Reply::new(
            421,
            "4.4.2",
            format!("{} Error: timeout exceeded {during}", self.rt.hostname),
        );
        // A slot held past a deadline is a refusal like any other limit; an
        // open transaction's envelope says which message was cut off.
        let tx = self.session.transaction();
        self.svc.logger.log(Record::Rejection(MessageRecord {
            inbound: self.client().inbound(),
            sender: tx.map(|t| t.sender.to_string()),
            recipients: tx.map(|t| t.recipients.iter().map(|r| r.to_string()).collect()),
            response: Some(response(&r)),
            reason: refusal_reason(&r),
            ..Default::default()
        }));
        self.close_with(r).await
    }

    /// Read more input before `deadline`, flushing pending replies first.
    async fn fill(&mut self, deadline: Instant, during: &str) -> Result<(), End> {
        self.flush().await?;
        match self.conn.read_more(&mut self.buf, deadline).await {
            Ok(_) => Ok(()),
            Err(ReadError::Timeout) => Err(self.timeout(during).await),
            Err(ReadError::Closed) => Err(End),
            Err(ReadError::Io(e)) => {
                tracing::debug!(peer = %self.peer, "read error: {e}");
                Err(End)
            }
        }
    }

    async fn protocol_error(&mut self, reply: Reply) -> Result<(), End> {
        self.errors += 1;
        self.queue(&reply);
        if self.errors >= MAX_ERRORS {
            return Err(self
                .close_with(Reply::new(
                    421,
                    "4.7.0",
                    "Too many errors, closing connection",
                ))
                .await);
        }
        Ok(())
    }

    async fn run(&mut self) -> Result<(), End> {
        let banner = self
            .rt
            .cfg
            .banner
            .clone()
            .unwrap_or_else(|| "Ironpost".into());
        let result = match self.meta_for("smtp_server_connection_accepted") {
            Some(meta) => self.svc.policy.connection_accepted(meta).await,
            None => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(EventError::Reject { code, text }) => {
                return Err(self.close_with(from_policy(code.max(400), &text)).await);
            }
            Err(EventError::Failed(e)) => {
                let r = self.policy_failure("smtp_server_connection_accepted", &e);
                return Err(self
                    .close_with(Reply::new(421, &r.enhanced, r.text()))
                    .await);
            }
        }
        let greeting = Reply::plain(220, vec![format!("{} ESMTP {banner}", self.rt.hostname)]);
        self.queue(&greeting);
        loop {
            let line = self.next_line("waiting for a command").await?;
            if crate::stop::closing() {
                return Err(self
                    .close_with(Reply::new(421, "4.3.2", "Shutting down, try again later"))
                    .await);
            }
            match command::parse(&line) {
                Ok(cmd) => self.dispatch(cmd).await?,
                Err(reply) => self.protocol_error(reply).await?,
            }
        }
    }

    /// The next CRLF-terminated line. A whole line must arrive within
    /// client_timeout, so a client trickling bytes cannot hold the
    /// connection open.
    async fn next_line(&mut self, during: &str) -> Result<Vec<u8>, End> {
        loop {
            match self.read_line(during).await? {
                Ok(line) => return Ok(line),
                Err(reply) => self.protocol_error(reply).await?,
            }
        }
    }

    /// The next line, or the reply for a framing error (bare CR or LF, too
    /// long). Inside a SASL exchange such an error ends the exchange
    /// (RFC 4954), so the next line is never taken for credentials.
    async fn read_line(&mut self, during: &str) -> Result<Result<Vec<u8>, Reply>, End> {
        let deadline = Instant::now() + self.rt.cfg.client_timeout;
        loop {
            match self.lines.next(&self.buf) {
                Some((n, Next::Line(l))) => {
                    let l = l.to_vec();
                    self.buf.drain(..n);
                    return Ok(Ok(l));
                }
                Some((n, Next::Error(e))) => {
                    self.buf.drain(..n);
                    let text = match e {
                        LineError::BareLf => "Command line must end with CRLF",
                        LineError::BareCr => "Bare CR in command line",
                        LineError::TooLong => "Command line too long",
                    };
                    return Ok(Err(Reply::new(500, "5.5.2", text)));
                }
                Some((n, Next::Skip)) => {
                    self.buf.drain(..n);
                }
                None => self.fill(deadline, during).await?,
            }
        }
    }

    async fn dispatch(&mut self, cmd: Command) -> Result<(), End> {
        let idle = matches!(
            cmd,
            Command::Noop
                | Command::Rset
                | Command::Vrfy
                | Command::Help
                | Command::NotImplemented(_)
        );
        if idle && self.session.transaction().is_none() {
            self.idle_commands += 1;
            if self.idle_commands > self.rt.cfg.max_idle_commands {
                let reply = Reply::new(
                    421,
                    "4.7.0",
                    "Too many commands without mail, closing connection",
                );
                self.svc.logger.log(Record::Rejection(MessageRecord {
                    inbound: self.client().inbound(),
                    response: Some(response(&reply)),
                    reason: refusal_reason(&reply),
                    ..Default::default()
                }));
                return Err(self.close_with(reply).await);
            }
        } else if matches!(cmd, Command::Mail(..)) {
            self.idle_commands = 0;
        }
        let sender = match &cmd {
            Command::Mail(path, _) => Some(path.clone()),
            _ => None,
        };
        let greeting = match &cmd {
            Command::Ehlo(name) | Command::Helo(name) => Some(name.clone()),
            _ => None,
        };
        match self.session.handle(cmd) {
            Action::Reply(reply) => {
                if let (Some(sender), true) = (sender, reply.is_success()) {
                    return self.after_mail(sender, reply).await;
                }
                if let (Some(name), true) = (greeting, reply.is_success()) {
                    return self.after_greeting(name, reply).await;
                }
                if reply.code >= 500 {
                    return self.protocol_error(reply).await;
                }
                self.queue(&reply);
                Ok(())
            }
            Action::Close(reply) => Err(self.close_with(reply).await),
            Action::StartTls => self.starttls().await,
            Action::CheckRecipient(mbox) => self.check_recipient(mbox).await,
            Action::StartData => self.receive_data().await,
            Action::Auth { mechanism, initial } => self.authenticate(mechanism, initial).await,
        }
    }

    /// What is known about the client so far.
    fn client(&self) -> Client {
        Client {
            peer: self.peer,
            hostname: self.rt.hostname.clone(),
            listener: Some(self.rt.name.clone()),
            helo: self.session.helo_name().map(str::to_string),
            tls: self.tls.clone(),
            client_cert: self.client_cert.clone(),
            auth: self.auth.clone(),
            http_auth: None,
        }
    }

    /// The connection's metadata object, with the facts the server owns
    /// brought up to date (the policy's own keys are left as they are).
    fn conn_meta(&self) -> ConnMeta {
        for (k, v) in self.client().conn_meta() {
            self.meta.set(&k, Some(v));
        }
        self.meta.clone()
    }

    /// The connection's metadata for `event`, when the policy handles it
    /// (building it costs a few allocations per command).
    fn meta_for(&self, event: &str) -> Option<ConnMeta> {
        self.svc.policy.has_handler(event).then(|| self.conn_meta())
    }

    /// EHLO/HELO was accepted by the protocol: `smtp_server_ehlo` may refuse
    /// it or change the extensions advertised.
    async fn after_greeting(&mut self, name: String, ok: Reply) -> Result<(), End> {
        let Some(meta) = self.meta_for("smtp_server_ehlo") else {
            self.queue(&ok);
            return Ok(());
        };
        let extensions: Vec<String> = ok.lines.iter().skip(1).cloned().collect();
        let esmtp = self.session.is_esmtp();
        match self.svc.policy.ehlo(name, meta, extensions).await {
            Ok(Some(exts)) if esmtp => {
                let mut lines = vec![ok.lines[0].clone()];
                lines.extend(exts);
                self.queue(&Reply::plain(ok.code, lines));
            }
            Ok(_) => self.queue(&ok),
            Err(e) => {
                self.session.forget_helo();
                self.meta.set("ehlo_domain", None);
                let reply = match e {
                    EventError::Reject { code, text } => from_policy(code.max(400), &text),
                    EventError::Failed(e) => self.policy_failure("smtp_server_ehlo", &e),
                };
                if reply.code >= 500 {
                    return self.protocol_error(reply).await;
                }
                self.queue(&reply);
            }
        }
        Ok(())
    }

    /// A client response line during a SASL exchange.
    async fn sasl_line(&mut self, challenge: &str) -> Result<Result<Vec<u8>, Reply>, End> {
        self.out
            .extend_from_slice(format!("334 {challenge}\r\n").as_bytes());
        let line = match self.read_line("during AUTH").await? {
            Ok(line) => line,
            Err(reply) => return Ok(Err(reply)),
        };
        Ok(match String::from_utf8(line) {
            Ok(l) => sasl::decode_response(&l),
            Err(_) => Err(Reply::new(501, "5.5.2", "Invalid base64 data")),
        })
    }

    async fn read_credentials(
        &mut self,
        mechanism: &str,
        initial: Option<String>,
    ) -> Result<Result<Credentials, Reply>, End> {
        Ok(match mechanism {
            "PLAIN" => {
                let decoded = match initial {
                    Some(i) => sasl::decode_response(&i),
                    None => self.sasl_line("").await?,
                };
                decoded.and_then(|d| sasl::parse_plain(&d))
            }
            _ => {
                let user = match initial {
                    Some(i) => sasl::decode_response(&i),
                    None => self.sasl_line(sasl::LOGIN_USERNAME_PROMPT).await?,
                };
                let user = match user {
                    Ok(u) => u,
                    Err(r) => return Ok(Err(r)),
                };
                match self.sasl_line(sasl::LOGIN_PASSWORD_PROMPT).await? {
                    Ok(p) => sasl::login_credentials(&user, &p),
                    Err(r) => Err(r),
                }
            }
        })
    }

    async fn authenticate(
        &mut self,
        mechanism: String,
        initial: Option<String>,
    ) -> Result<(), End> {
        let limit = self.rt.cfg.auth_failure_limit;
        let window = self.rt.cfg.auth_failure_window;
        let ip_key = auth::ip_key(self.peer.ip());
        let throttled = || {
            Reply::new(
                421,
                "4.7.0",
                "Too many authentication failures, try again later",
            )
        };
        self.svc.auth_throttle.refresh(&[&ip_key]).await;
        if self.svc.auth_throttle.blocked(&ip_key, limit, window) {
            self.log_authn(
                None,
                false,
                "throttled: too many failures from this address",
            );
            return Err(self.close_with(throttled()).await);
        }
        let creds = match self.read_credentials(&mechanism, initial).await? {
            Ok(c) => c,
            Err(reply) => {
                self.queue(&reply);
                return Ok(());
            }
        };
        // Locked out: this address, and this user from this address. A
        // user's failures from every address only slow down the attempts
        // on it, so an attacker cannot lock the real user out.
        let user_key = auth::user_key(&creds.authc);
        let user_ip_key = format!("{user_key}|{ip_key}");
        self.svc
            .auth_throttle
            .refresh(&[&user_ip_key, &user_key])
            .await;
        if self.svc.auth_throttle.blocked(&user_ip_key, limit, window) {
            self.log_authn(
                Some(&creds),
                false,
                "throttled: too many failures for this user from this address",
            );
            return Err(self.close_with(throttled()).await);
        }
        if let Some(delay) = self.svc.auth_throttle.slowdown(&user_key, limit, window) {
            tracing::info!(peer = %self.peer, "AUTH for a user under repeated failures: answering after {delay:?}");
            tokio::time::sleep(delay).await;
        }
        let meta = self.conn_meta();
        let decision = self
            .svc
            .policy
            .auth_plain(
                creds.authz.clone(),
                creds.authc.clone(),
                creds.password.clone(),
                meta,
            )
            .await;
        let failure = match decision {
            Ok(AuthDecision::Allowed { identities }) if creds.authz == creds.authc || identities.contains(&creds.authz) => {
                self.session.set_authenticated();
                self.auth = Some((creds.authz.clone(), creds.authc.clone()));
                self.log_authn(Some(&creds), true, "");
                self.queue(&Reply::new(235, "2.7.0", "Authentication successful"));
                return Ok(());
            }
            Ok(AuthDecision::Allowed { .. }) => (
                Reply::new(535, "5.7.8", "Authentication credentials invalid"),
                "authorization identity differs from the authenticated user and the policy did not permit it",
            ),
            Ok(AuthDecision::Denied) => (Reply::new(535, "5.7.8", "Authentication credentials invalid"), "invalid credentials"),
            Err(EventError::Reject { code, text }) => (from_policy(code.max(400), &text), "rejected by policy"),
            Err(EventError::Failed(e)) => {
                tracing::error!(peer = %self.peer, "policy event smtp_server_auth_plain failed: {e}");
                self.log_authn(Some(&creds), false, "policy error");
                self.queue(&Reply::new(454, "4.7.0", "Temporary authentication failure"));
                return Ok(());
            }
        };
        self.svc.auth_throttle.record_failure(&ip_key, window);
        self.svc.auth_throttle.record_failure(&user_ip_key, window);
        self.svc.auth_throttle.record_failure(&user_key, window);
        self.log_authn(Some(&creds), false, failure.1);
        // A wrong password is answered 535 whatever the counts; the next
        // attempt from a locked-out address gets 421.
        self.protocol_error(failure.0).await
    }

    /// AuthN record: who tried, from where, and the outcome. Never the
    /// password.
    fn log_authn(&self, creds: Option<&Credentials>, success: bool, reason: &str) {
        self.svc.logger.log(Record::AuthN(AuthRecord {
            inbound: self.client().inbound(),
            authn_id: creds.map(|c| c.authc.clone()),
            authz_id: creds.map(|c| c.authz.clone()),
            success,
            reason: (!reason.is_empty()).then(|| reason.to_string()),
            ..Default::default()
        }));
    }

    fn policy_failure(&self, event: &str, e: &str) -> Reply {
        tracing::error!(peer = %self.peer, "policy event {event} failed: {e}");
        Reply::new(451, "4.3.0", "Temporary policy failure, try again later")
    }

    /// The sender was accepted syntactically: `smtp_server_mail_from` may
    /// refuse it, and its listener domain may grant this client
    /// `relay_from`.
    async fn after_mail(&mut self, sender: ReversePath, ok: Reply) -> Result<(), End> {
        self.relay_from_ok = false;
        if !self.svc.inflight.has_headroom() {
            // Mail being received already fills the memory budget.
            self.session.take_transaction(false);
            self.queue(&insufficient_resources());
            return Ok(());
        }
        let verdict = match self.meta_for("smtp_server_mail_from") {
            Some(meta) => self.svc.policy.mail_from(sender.to_string(), meta).await,
            None => Ok(()),
        };
        if let Err(e) = verdict {
            let reply = match e {
                EventError::Reject { code, text } => from_policy(code.max(400), &text),
                EventError::Failed(e) => self.policy_failure("smtp_server_mail_from", &e),
            };
            self.session.take_transaction(false);
            if reply.code >= 500 {
                return self.protocol_error(reply).await;
            }
            self.queue(&reply);
            return Ok(());
        }
        let domain = match &sender {
            ReversePath::Mailbox(m) => m.domain_name().map(str::to_string),
            ReversePath::Null => None,
        };
        if let (false, Some(domain)) = (self.trusted, domain) {
            let meta = self.conn_meta();
            match self
                .svc
                .policy
                .listener_domain(domain, self.rt.name.clone(), meta)
                .await
            {
                Ok(Some(ld)) => self.relay_from_ok = ld.relay_from.contains(self.peer.ip()),
                Ok(None) => {}
                Err(e) => {
                    let reply = match e {
                        EventError::Reject { code, text } => from_policy(code.max(400), &text),
                        EventError::Failed(e) => self.policy_failure("get_listener_domain", &e),
                    };
                    self.session.take_transaction(false);
                    self.queue(&reply);
                    return Ok(());
                }
            }
        }
        self.queue(&ok);
        Ok(())
    }

    async fn check_recipient(&mut self, mbox: Mailbox) -> Result<(), End> {
        let verdict = match self.meta_for("smtp_server_rcpt_to") {
            Some(meta) => self.svc.policy.rcpt_to(mbox.to_string(), meta).await,
            None => Ok(()),
        };
        if let Err(e) = verdict {
            let reply = match e {
                EventError::Reject { code, text } => {
                    let r = from_policy(code.max(400), &text);
                    self.reject_recipient(&mbox, r)
                }
                EventError::Failed(e) => self.policy_failure("smtp_server_rcpt_to", &e),
            };
            if reply.code >= 500 {
                return self.protocol_error(reply).await;
            }
            self.queue(&reply);
            return Ok(());
        }
        // Authenticated submitters may relay.
        let verdict = relay::check(
            self.trusted || self.relay_from_ok || self.auth.is_some(),
            &mbox,
        );
        let reply = match verdict {
            Verdict::Allow => self.session.accept_recipient(mbox),
            Verdict::Deny(r) => self.reject_recipient(&mbox, r),
            Verdict::AskPolicy(domain) => {
                let meta = self.conn_meta();
                match self
                    .svc
                    .policy
                    .listener_domain(domain, self.rt.name.clone(), meta)
                    .await
                {
                    Ok(Some(ld)) if ld.relay_to => self.session.accept_recipient(mbox),
                    Ok(_) => self.reject_recipient(&mbox, relay::denied()),
                    Err(EventError::Reject { code, text }) => {
                        let r = from_policy(code.max(400), &text);
                        self.reject_recipient(&mbox, r)
                    }
                    Err(EventError::Failed(e)) => self.policy_failure("get_listener_domain", &e),
                }
            }
        };
        if reply.code >= 500 {
            return self.protocol_error(reply).await;
        }
        self.queue(&reply);
        Ok(())
    }

    fn reject_recipient(&self, mbox: &Mailbox, reply: Reply) -> Reply {
        self.svc.logger.log(Record::Rejection(MessageRecord {
            inbound: self.client().inbound(),
            recipient: Some(mbox.to_string()),
            sender: self.session.transaction().map(|tx| tx.sender.to_string()),
            response: Some(response(&reply)),
            reason: refusal_reason(&reply),
            ..Default::default()
        }));
        reply
    }

    async fn starttls(&mut self) -> Result<(), End> {
        self.queue(&Reply::new(220, "2.0.0", "Ready to start TLS"));
        self.flush().await?;
        if !self.buf.is_empty() {
            // Anything the client sent after STARTTLS was sent in cleartext
            // and must not be executed inside the TLS session.
            tracing::warn!(peer = %self.peer, bytes = self.buf.len(), "discarding cleartext input pipelined after STARTTLS");
            self.buf.clear();
        }
        self.lines = LineReader::new();
        let config = self.rt.tls.config().await;
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Closed) else {
            return Err(End);
        };
        let accept = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
        match tokio::time::timeout(self.rt.cfg.client_timeout, accept).await {
            Ok(Ok(tls)) => {
                self.conn = Conn::Tls(Box::new(tls));
                self.tls = self.conn.tls_info();
                self.client_cert = self.conn.client_certificate();
                self.session.tls_established();
                self.relay_from_ok = false;
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, "TLS handshake failed: {e}");
                Err(End)
            }
            Err(_) => Err(End),
        }
    }

    async fn receive_data(&mut self) -> Result<(), End> {
        // A stop waits for this message to be received and answered.
        let _receiving = crate::stop::Receiving::begin();
        // RFC 2034 gives enhanced codes to 2xx, 4xx and 5xx replies only.
        self.out
            .extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
        let rt = self.rt.clone();
        let cfg = &rt.cfg;
        let mut rx = DataReceiver::new(DataOptions {
            line_endings: match cfg.invalid_line_endings {
                LineEndingPolicy::Deny => LineEndings::Deny,
                LineEndingPolicy::Allow => LineEndings::Allow,
                LineEndingPolicy::Fix => LineEndings::Fix,
            },
            max_line_length: cfg.line_length_hard_limit,
            max_size: cfg.max_message_size,
        });
        let declared = self
            .session
            .transaction()
            .and_then(|t| t.params.size)
            .unwrap_or(0);
        let spill_dir = self.svc.spill_dir.clone();
        let (first, slice) = match spill_dir {
            Some(_) => (crate::spill::SPILL_THRESHOLD, crate::spill::FEED_SLICE),
            None => (4 << 20, usize::MAX),
        };
        let mut content = crate::spill::Incoming::new(
            spill_dir,
            (declared.min(cfg.max_message_size) as usize).clamp(16 * 1024, first),
        );
        let data_deadline = Instant::now() + cfg.data_processing_timeout;
        let client_timeout = cfg.client_timeout;
        // The buffer's memory is drawn from the shared budget; past it the
        // rest is read and thrown away, and the transaction refused.
        let mut reservation = crate::budget::Reservation::new(&self.svc.inflight);
        let mut refusal = (!reservation.grow_to(content.memory())).then(insufficient_resources);
        if refusal.is_some() {
            content.discard();
        }
        loop {
            let end = self.buf.len().min(slice);
            let (n, done) = rx.feed(&self.buf[..end], content.buffer());
            self.buf.drain(..n);
            if refusal.is_none() {
                if let Err(e) = content.spill_if_full().await {
                    tracing::error!(peer = %self.peer, "cannot spill DATA to disk: {e}");
                    refusal = Some(insufficient_storage());
                } else if !reservation.grow_to(content.memory()) {
                    refusal = Some(insufficient_resources());
                }
            }
            if refusal.is_some() {
                content.discard();
            }
            if done {
                break;
            }
            if !self.buf.is_empty() && n > 0 {
                continue; // the rest of what was read, a slice at a time
            }
            let deadline = (Instant::now() + client_timeout).min(data_deadline);
            self.fill(deadline, "during DATA").await?;
        }
        // A whole message is needed for the policy, signing and the spool:
        // read back from disk, it waits a while for room in the budget.
        let mut message = Vec::new();
        if refusal.is_none() && rx.outcome() == DataOutcome::Ok {
            let total = content.len() as usize;
            if !reservation
                .grow_to_within(total.max(content.memory()), BUDGET_WAIT)
                .await
            {
                refusal = Some(insufficient_resources());
            } else {
                match content.into_vec().await {
                    Ok(m) => {
                        message = m;
                        reservation.shrink_to(message.capacity());
                    }
                    Err(e) => {
                        tracing::error!(peer = %self.peer, "cannot read spilled DATA back: {e}");
                        refusal = Some(insufficient_storage());
                    }
                }
            }
        }
        if let Some(reply) = refusal {
            let Some(tx) = self.session.transaction().cloned() else {
                return Ok(());
            };
            self.log_message_rejection(&tx.sender.to_string(), &tx.recipients, rx.size(), &reply);
            self.session.take_transaction(false);
            self.queue(&reply);
            return Ok(());
        }
        let Some(tx) = self.session.transaction().cloned() else {
            return Ok(());
        };
        let reply = match rx.outcome() {
            DataOutcome::Ok => {
                self.accept_message(tx.sender.to_string(), &tx.recipients, message)
                    .await
            }
            bad => {
                let reply = match bad {
                    DataOutcome::BareLineEnding => Reply::new(
                        552,
                        "5.6.0",
                        "Message contains bare CR or LF line endings, which are not permitted (RFC 5321 2.3.8)",
                    ),
                    DataOutcome::LineTooLong => Reply::new(
                        552,
                        "5.6.0",
                        format!("Message has a line longer than {} octets", cfg.line_length_hard_limit),
                    ),
                    _ => Reply::new(552, "5.3.4", "Message size exceeds fixed maximum message size"),
                };
                self.log_message_rejection(
                    &tx.sender.to_string(),
                    &tx.recipients,
                    rx.size(),
                    &reply,
                );
                reply
            }
        };
        self.session.take_transaction(reply.is_success());
        self.queue(&reply);
        Ok(())
    }

    async fn accept_message(
        &mut self,
        sender: String,
        recipients: &[Mailbox],
        content: Vec<u8>,
    ) -> Reply {
        let arrival = Arrival {
            source: Source::Smtp,
            conn_meta: self.conn_meta(),
            client: self.client(),
            protocol: received::protocol(
                self.session.is_esmtp(),
                self.tls.is_some(),
                self.session.is_authenticated(),
            ),
            sender,
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            content,
            trace: self.rt.cfg.trace_headers.clone(),
        };
        match self.svc.reception.receive(arrival).await {
            Ok(id) => crate::reception::accepted(id),
            Err(reply) => reply,
        }
    }

    fn log_message_rejection(
        &self,
        sender: &str,
        recipients: &[Mailbox],
        size: u64,
        reply: &Reply,
    ) {
        self.svc.logger.log(Record::Rejection(MessageRecord {
            inbound: self.client().inbound(),
            sender: Some(sender.to_string()),
            recipients: Some(recipients.iter().map(|r| r.to_string()).collect()),
            size: Some(size),
            response: Some(response(reply)),
            reason: refusal_reason(reply),
            ..Default::default()
        }));
    }
}

/// The memory budget for mail in flight is spent: try again later.
/// The spill file could not be written or read (disk full, most likely).
fn insufficient_storage() -> Reply {
    Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
}

fn insufficient_resources() -> Reply {
    Reply::new(
        452,
        "4.3.1",
        "Insufficient system resources, try again later",
    )
}
