//! The command-sequencing state machine of an inbound ESMTP session.
//!
//! It decides every reply that depends only on protocol state. Where a
//! decision needs the outside world (relay policy, TLS, storage, SASL) it
//! returns an [`Action`] and the I/O driver calls back in with the result.

use crate::address::{Mailbox, ReversePath};
use crate::command::{Command, MailParams};
use crate::reply::Reply;

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_messages: usize,
    /// STARTTLS is offered (a certificate is configured or generated).
    pub starttls: bool,
    /// SASL mechanisms, advertised only once TLS is active.
    pub auth_mechanisms: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Transaction {
    pub sender: ReversePath,
    pub params: MailParams,
    pub recipients: Vec<Mailbox>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Reply(Reply),
    /// Send the reply, then close the connection.
    Close(Reply),
    /// Send `220 2.0.0 Ready to start TLS`, drop any input already buffered
    /// (it was sent in cleartext and must not be executed under TLS), run the
    /// handshake, then call [`Session::tls_established`].
    StartTls,
    /// Decide relaying for this recipient, then call
    /// [`Session::accept_recipient`] or reply with the rejection.
    CheckRecipient(Mailbox),
    /// Send 354, receive the content, then call [`Session::take_transaction`].
    StartData,
    /// Run a SASL exchange for this mechanism.
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    helo: Option<String>,
    esmtp: bool,
    tls_active: bool,
    authenticated: bool,
    tx: Option<Transaction>,
    messages: usize,
}

fn bad_sequence(text: &str) -> Action {
    Action::Reply(Reply::new(503, "5.5.1", text))
}

impl Session {
    pub fn new(cfg: SessionConfig) -> Session {
        Session {
            cfg,
            helo: None,
            esmtp: false,
            tls_active: false,
            authenticated: false,
            tx: None,
            messages: 0,
        }
    }

    /// The policy refused the EHLO/HELO: the client must greet again.
    pub fn forget_helo(&mut self) {
        self.helo = None;
        self.esmtp = false;
    }

    pub fn helo_name(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    pub fn is_esmtp(&self) -> bool {
        self.esmtp
    }

    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    pub fn transaction(&self) -> Option<&Transaction> {
        self.tx.as_ref()
    }

    pub fn handle(&mut self, cmd: Command) -> Action {
        match cmd {
            Command::Ehlo(name) => {
                self.helo = Some(name.clone());
                self.esmtp = true;
                self.tx = None;
                Action::Reply(self.ehlo_reply(&name))
            }
            Command::Helo(name) => {
                self.helo = Some(name);
                self.esmtp = false;
                self.tx = None;
                Action::Reply(Reply::new(250, "2.0.0", self.cfg.hostname.clone()))
            }
            Command::Mail(sender, params) => self.mail(sender, params),
            Command::Rcpt(mbox) => self.rcpt(mbox),
            Command::Data => match &self.tx {
                None => bad_sequence("Need MAIL before DATA"),
                Some(tx) if tx.recipients.is_empty() => {
                    Action::Reply(Reply::new(554, "5.5.1", "No valid recipients"))
                }
                Some(_) => Action::StartData,
            },
            Command::Rset => {
                self.tx = None;
                Action::Reply(Reply::new(250, "2.0.0", "Reset"))
            }
            Command::Noop => Action::Reply(Reply::new(250, "2.0.0", "OK")),
            Command::Quit => Action::Close(Reply::new(221, "2.0.0", "Bye")),
            Command::Vrfy => Action::Reply(Reply::new(
                252,
                "2.5.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Help => Action::Reply(Reply::multi(
                214,
                "2.0.0",
                vec![
                    "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH"
                        .into(),
                    "See RFC 5321".into(),
                ],
            )),
            Command::StartTls => {
                if self.tls_active {
                    bad_sequence("TLS is already active")
                } else if !self.cfg.starttls {
                    Action::Reply(Reply::new(454, "4.7.0", "TLS not available"))
                } else if self.tx.is_some() {
                    bad_sequence("STARTTLS not permitted during a mail transaction")
                } else {
                    Action::StartTls
                }
            }
            Command::Auth { mechanism, initial } => {
                if !self.esmtp {
                    bad_sequence("Send EHLO first")
                } else if !self.tls_active {
                    Action::Reply(Reply::new(
                        530,
                        "5.7.0",
                        "Must issue a STARTTLS command first",
                    ))
                } else if self.cfg.auth_mechanisms.is_empty() {
                    Action::Reply(Reply::new(502, "5.5.1", "AUTH not available"))
                } else if self.authenticated {
                    bad_sequence("Already authenticated")
                } else if self.tx.is_some() {
                    bad_sequence("AUTH not permitted during a mail transaction")
                } else if !self.cfg.auth_mechanisms.contains(&mechanism) {
                    Action::Reply(Reply::new(504, "5.5.4", "Unrecognized authentication type"))
                } else {
                    Action::Auth { mechanism, initial }
                }
            }
            Command::NotImplemented(verb) => {
                Action::Reply(Reply::new(502, "5.5.1", format!("{verb} not implemented")))
            }
        }
    }

    fn ehlo_reply(&self, client: &str) -> Reply {
        let mut lines = vec![
            format!("{} Hello {}", self.cfg.hostname, client),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.cfg.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.cfg.starttls && !self.tls_active {
            lines.push("STARTTLS".to_string());
        }
        if self.tls_active && !self.cfg.auth_mechanisms.is_empty() {
            lines.push(format!("AUTH {}", self.cfg.auth_mechanisms.join(" ")));
        }
        Reply::plain(250, lines)
    }

    fn mail(&mut self, sender: ReversePath, params: MailParams) -> Action {
        if self.helo.is_none() {
            return bad_sequence("Send EHLO/HELO first");
        }
        if self.tx.is_some() {
            return bad_sequence("Nested MAIL command");
        }
        if self.messages >= self.cfg.max_messages {
            return Action::Close(Reply::new(
                421,
                "4.7.0",
                "Too many messages on this connection, please reconnect",
            ));
        }
        let has_params = params.size.is_some() || params.body.is_some() || params.smtputf8;
        if !self.esmtp && has_params {
            return Action::Reply(Reply::new(555, "5.5.4", "MAIL parameters require EHLO"));
        }
        if params.size.is_some_and(|s| s > self.cfg.max_message_size) {
            return Action::Reply(Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ));
        }
        let text = match &sender {
            ReversePath::Null => "Sender <> OK".to_string(),
            ReversePath::Mailbox(_) => "Sender OK".to_string(),
        };
        self.tx = Some(Transaction {
            sender,
            params,
            recipients: Vec::new(),
        });
        Action::Reply(Reply::new(250, "2.1.0", text))
    }

    fn rcpt(&mut self, mbox: Mailbox) -> Action {
        let Some(tx) = &self.tx else {
            return bad_sequence("Need MAIL before RCPT");
        };
        if !mbox.is_ascii() && !tx.params.smtputf8 {
            return Action::Reply(Reply::new(
                553,
                "5.6.7",
                "Non-ASCII address requires SMTPUTF8",
            ));
        }
        if mbox.domain.is_none() {
            // Bare <Postmaster>: Ironpost has no local mailboxes to deliver to.
            return Action::Reply(Reply::new(
                550,
                "5.1.1",
                "No local postmaster mailbox here; use postmaster@domain",
            ));
        }
        if tx.recipients.len() >= self.cfg.max_recipients {
            return Action::Reply(Reply::new(452, "4.5.3", "Too many recipients"));
        }
        Action::CheckRecipient(mbox)
    }

    /// The driver approved a recipient from [`Action::CheckRecipient`].
    pub fn accept_recipient(&mut self, mbox: Mailbox) -> Reply {
        match &mut self.tx {
            Some(tx) => {
                tx.recipients.push(mbox);
                Reply::new(250, "2.1.5", "Recipient OK")
            }
            None => Reply::new(503, "5.5.1", "Need MAIL before RCPT"),
        }
    }

    /// TLS is up: everything learned in cleartext is forgotten (RFC 3207 §4.2).
    pub fn tls_established(&mut self) {
        self.tls_active = true;
        self.helo = None;
        self.esmtp = false;
        self.tx = None;
    }

    pub fn set_authenticated(&mut self) {
        self.authenticated = true;
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// End of DATA: the transaction is over whatever the outcome. `accepted`
    /// counts the message towards `max_messages`.
    pub fn take_transaction(&mut self, accepted: bool) -> Option<Transaction> {
        if accepted {
            self.messages += 1;
        }
        self.tx.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;

    fn session() -> Session {
        Session::new(SessionConfig {
            hostname: "mx.test".into(),
            max_message_size: 1000,
            max_recipients: 2,
            max_messages: 1,
            starttls: true,
            auth_mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
        })
    }

    fn run(s: &mut Session, line: &str) -> Action {
        match parse(line.as_bytes()) {
            Ok(cmd) => s.handle(cmd),
            Err(r) => Action::Reply(r),
        }
    }

    fn code(a: &Action) -> u16 {
        match a {
            Action::Reply(r) | Action::Close(r) => r.code,
            Action::StartTls => 220,
            Action::CheckRecipient(_) => 1,
            Action::StartData => 354,
            Action::Auth { .. } => 334,
        }
    }

    #[test]
    fn sequencing() {
        let mut s = session();
        assert_eq!(code(&run(&mut s, "MAIL FROM:<a@b.test>")), 503);
        assert_eq!(code(&run(&mut s, "RCPT TO:<a@b.test>")), 503);
        assert_eq!(code(&run(&mut s, "DATA")), 503);
        let Action::Reply(ehlo) = run(&mut s, "EHLO c.test") else {
            panic!()
        };
        assert!(ehlo.lines.contains(&"STARTTLS".to_string()));
        assert!(!ehlo.lines.iter().any(|l| l.starts_with("AUTH")));
        assert_eq!(code(&run(&mut s, "AUTH PLAIN")), 530);
        assert_eq!(code(&run(&mut s, "MAIL FROM:<a@b.test> SIZE=1001")), 552);
        assert_eq!(code(&run(&mut s, "MAIL FROM:<a@b.test>")), 250);
        assert_eq!(code(&run(&mut s, "MAIL FROM:<a@b.test>")), 503);
        assert_eq!(code(&run(&mut s, "STARTTLS")), 503);
        assert_eq!(code(&run(&mut s, "DATA")), 554);
        let Action::CheckRecipient(m) = run(&mut s, "RCPT TO:<x@y.test>") else {
            panic!()
        };
        assert_eq!(s.accept_recipient(m.clone()).code, 250);
        s.accept_recipient(m);
        assert_eq!(code(&run(&mut s, "RCPT TO:<z@y.test>")), 452);
        assert_eq!(code(&run(&mut s, "RCPT TO:<Postmaster>")), 550);
        assert_eq!(code(&run(&mut s, "RCPT TO:<ü@y.test>")), 553);
        assert_eq!(run(&mut s, "DATA"), Action::StartData);
        assert_eq!(s.take_transaction(true).unwrap().recipients.len(), 2);
        // max_messages = 1
        assert!(matches!(run(&mut s, "MAIL FROM:<a@b.test>"), Action::Close(r) if r.code == 421));
        assert_eq!(code(&run(&mut s, "VRFY x")), 252);
        assert_eq!(code(&run(&mut s, "HELP")), 214);
        assert_eq!(code(&run(&mut s, "EXPN x")), 502);
        assert!(matches!(run(&mut s, "QUIT"), Action::Close(r) if r.code == 221));
    }

    #[test]
    fn tls_resets_state_and_unlocks_auth() {
        let mut s = session();
        run(&mut s, "EHLO c.test");
        assert_eq!(run(&mut s, "STARTTLS"), Action::StartTls);
        s.tls_established();
        assert_eq!(code(&run(&mut s, "MAIL FROM:<a@b.test>")), 503);
        assert_eq!(code(&run(&mut s, "STARTTLS")), 503);
        let Action::Reply(ehlo) = run(&mut s, "EHLO c.test") else {
            panic!()
        };
        assert!(!ehlo.lines.contains(&"STARTTLS".to_string()));
        assert!(ehlo.lines.contains(&"AUTH PLAIN LOGIN".to_string()));
        assert_eq!(code(&run(&mut s, "AUTH CRAM-MD5")), 504);
        assert!(matches!(run(&mut s, "AUTH PLAIN"), Action::Auth { .. }));
        s.set_authenticated();
        assert_eq!(code(&run(&mut s, "AUTH PLAIN")), 503);
    }

    #[test]
    fn helo_forbids_extensions() {
        let mut s = session();
        run(&mut s, "HELO c.test");
        assert_eq!(code(&run(&mut s, "MAIL FROM:<a@b.test> SIZE=10")), 555);
        assert_eq!(code(&run(&mut s, "MAIL FROM:<a@b.test>")), 250);
    }
}
