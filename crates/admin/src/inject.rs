//! `POST /api/inject/v1`: the KumoMTA request shape, turned into finished
//! RFC 5322 messages for the backend.
//!
//! One message is generated per recipient (the `To:` header and the
//! substitutions differ), except for string `content` that has no template
//! substitution in it, which is shared by every recipient. A problem with
//! the request as a whole (bad sender, bad `from`, a template that does
//! not compile, too much output) rejects it with 400/413 and nothing is
//! injected; a problem with one recipient (bad address, undefined
//! variable) is reported for that recipient in `failed_recipients` and
//! `errors`, and the others go ahead.

use crate::auth::HttpAuth;
use crate::mime::{self, Attachment, MessageParts};
use crate::template::{Escape, Template};
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The most message bytes one request may generate (recipients times
/// message size), so a 2 MB request cannot make the daemon build
/// gigabytes. Beyond it the request gets 413 and nothing is injected.
pub const MAX_GENERATED_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectV1Request {
    /// The envelope sender; `""` for the null reverse path.
    pub envelope_sender: String,
    pub recipients: Vec<Recipient>,
    pub content: Content,
    #[serde(default)]
    pub substitutions: Map<String, Value>,
    #[serde(default)]
    pub template_dialect: TemplateDialect,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum TemplateDialect {
    /// `{{ variable }}` substitutions (the subset of Jinja Ironpost supports).
    #[default]
    Jinja,
    /// No templating: content is sent exactly as given.
    Static,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub substitutions: Map<String, Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentSpec {
    pub data: String,
    #[serde(default)]
    pub base64: bool,
    pub content_type: String,
    #[serde(default)]
    pub content_id: Option<String>,
    #[serde(default)]
    pub file_name: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Builder {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub text_body: Option<String>,
    #[serde(default)]
    pub html_body: Option<String>,
    #[serde(default)]
    pub from: Option<Contact>,
    #[serde(default)]
    pub reply_to: Option<Contact>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentSpec>,
}

#[derive(Clone, Debug)]
pub enum Content {
    /// A complete RFC 5322 message.
    Rfc822(String),
    /// Parts to build a MIME message from.
    Builder(Builder),
}

// Not `#[serde(untagged)]`: its "did not match any variant" hides which
// field of the object form was wrong.
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Content::Rfc822(s)),
            v @ Value::Object(_) => serde_json::from_value(v)
                .map(Content::Builder)
                .map_err(|e| serde::de::Error::custom(format!("content: {e}"))),
            _ => Err(serde::de::Error::custom(
                "content must be a string (an RFC 5322 message) or an object",
            )),
        }
    }
}

/// What the backend receives: finished messages and their envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectRequest {
    /// `""` for the null reverse path; otherwise a validated address.
    pub envelope_sender: String,
    /// Each with its own recipients (validated addresses) and content
    /// (CRLF line endings throughout).
    pub messages: Vec<InjectMessage>,
    /// The HTTP client, for `received_from` and logs.
    pub peer: SocketAddr,
    /// The listener's own address (`received_via`) and `hostname`.
    pub local: SocketAddr,
    pub hostname: Option<String>,
    pub tls: bool,
    /// Who was authorized; `http_auth` passed beside the request is its
    /// [`HttpAuth::summarize`] (ambiguous on its own: a user may be named
    /// like an IP address).
    pub auth: HttpAuth,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectMessage {
    pub recipients: Vec<String>,
    pub content: Vec<u8>,
}

/// The response body, KumoMTA's shape. The backend returns one for the
/// recipients it was given; recipients that failed generation are added.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct InjectOutcome {
    pub success_count: usize,
    pub fail_count: usize,
    pub failed_recipients: Vec<String>,
    pub errors: Vec<String>,
}

impl InjectOutcome {
    pub fn fail(&mut self, recipient: &str, error: &str) {
        self.fail_count += 1;
        self.failed_recipients.push(recipient.to_string());
        self.errors.push(format!("{recipient}: {error}"));
    }

    pub fn merge(&mut self, other: InjectOutcome) {
        self.success_count += other.success_count;
        self.fail_count += other.fail_count;
        self.failed_recipients.extend(other.failed_recipients);
        self.errors.extend(other.errors);
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum GenerateError {
    /// 400: the request as a whole is wrong.
    BadRequest(String),
    /// 413: it would generate more than [`MAX_GENERATED_BYTES`].
    TooLarge,
}

/// Messages for the backend plus the recipients that already failed.
#[derive(Debug)]
pub struct Generated {
    pub envelope_sender: String,
    pub messages: Vec<InjectMessage>,
    pub failed: InjectOutcome,
}

fn compile(text: &str, dialect: TemplateDialect) -> Result<Template, String> {
    match dialect {
        TemplateDialect::Jinja => Template::compile(text),
        TemplateDialect::Static => Ok(Template::literal(text)),
    }
}

/// A string `content` must at least start with a header field.
fn looks_like_message(text: &str) -> bool {
    let first = text.split(['\r', '\n']).next().unwrap_or("");
    first
        .split_once(':')
        .is_some_and(|(name, _)| mime::valid_header_name(name))
}

struct CompiledBuilder {
    subject: Option<Template>,
    text: Option<Template>,
    html: Option<Template>,
    headers: Vec<(String, Template)>,
    from: String,
    reply_to: Option<String>,
    message_id_domain: String,
    attachments: Vec<Attachment>,
}

fn decode_attachments(specs: &[AttachmentSpec]) -> Result<Vec<Attachment>, String> {
    specs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let data = if a.base64 {
                let compact: String = a.data.chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|e| format!("attachments[{i}]: data is not base64: {e}"))?
            } else {
                a.data.as_bytes().to_vec()
            };
            Ok(Attachment {
                data,
                content_type: a.content_type.clone(),
                file_name: a.file_name.clone(),
                content_id: a.content_id.clone(),
            })
        })
        .collect()
}

fn compile_builder(
    b: &Builder,
    envelope_sender: &str,
    dialect: TemplateDialect,
) -> Result<CompiledBuilder, String> {
    if b.text_body.is_none() && b.html_body.is_none() {
        return Err("content needs text_body, html_body or both".into());
    }
    let opt = |t: &Option<String>, what: &str| {
        t.as_deref()
            .map(|t| compile(t, dialect).map_err(|e| format!("content.{what}: {e}")))
            .transpose()
    };
    let (from_email, from) = match &b.from {
        Some(c) => (
            c.email.clone(),
            mime::mailbox(c.name.as_deref(), &c.email).map_err(|e| format!("content.from: {e}"))?,
        ),
        None if !envelope_sender.is_empty() => (
            envelope_sender.to_string(),
            mime::mailbox(None, envelope_sender)?,
        ),
        None => return Err("content.from is required when envelope_sender is empty".into()),
    };
    let reply_to = b
        .reply_to
        .as_ref()
        .map(|c| {
            mime::mailbox(c.name.as_deref(), &c.email).map_err(|e| format!("content.reply_to: {e}"))
        })
        .transpose()?;
    let message_id_domain = mime::parse_address(&from_email)
        .ok()
        .and_then(|m| m.domain_name().map(str::to_string))
        .filter(|d| d.is_ascii())
        .unwrap_or_else(|| "localhost".to_string());
    let headers = b
        .headers
        .iter()
        .map(|(name, value)| {
            if !mime::valid_header_name(name) {
                return Err(format!(
                    "content.headers: {name:?} is not a valid header name"
                ));
            }
            Ok((
                name.clone(),
                compile(value, dialect).map_err(|e| format!("content.headers.{name}: {e}"))?,
            ))
        })
        .collect::<Result<_, String>>()?;
    Ok(CompiledBuilder {
        subject: opt(&b.subject, "subject")?,
        text: opt(&b.text_body, "text_body")?,
        html: opt(&b.html_body, "html_body")?,
        headers,
        from,
        reply_to,
        message_id_domain,
        attachments: decode_attachments(&b.attachments)?,
    })
}

impl CompiledBuilder {
    fn build(&self, r: &Recipient, vars: &Map<String, Value>) -> Result<Vec<u8>, String> {
        let render =
            |t: &Option<Template>, esc| t.as_ref().map(|t| t.render(vars, esc)).transpose();
        let headers = self
            .headers
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.render(vars, Escape::None)?)))
            .collect::<Result<_, String>>()?;
        mime::build(&MessageParts {
            from: self.from.clone(),
            to: mime::mailbox(r.name.as_deref(), &r.email)?,
            reply_to: self.reply_to.clone(),
            subject: render(&self.subject, Escape::None)?,
            message_id_domain: self.message_id_domain.clone(),
            headers,
            text_body: render(&self.text, Escape::None)?,
            html_body: render(&self.html, Escape::Html)?,
            attachments: self.attachments.clone(),
        })
    }
}

/// The variables for one recipient: the request's substitutions, then
/// `email` and `name`, then the recipient's own substitutions.
fn variables(global: &Map<String, Value>, r: &Recipient) -> Map<String, Value> {
    let mut vars = global.clone();
    vars.insert("email".into(), Value::String(r.email.clone()));
    if let Some(name) = &r.name {
        vars.insert("name".into(), Value::String(name.clone()));
    }
    for (k, v) in &r.substitutions {
        vars.insert(k.clone(), v.clone());
    }
    vars
}

/// Validate the request and build its messages.
pub fn generate(req: &InjectV1Request) -> Result<Generated, GenerateError> {
    generate_with_limit(req, MAX_GENERATED_BYTES)
}

pub fn generate_with_limit(
    req: &InjectV1Request,
    limit: usize,
) -> Result<Generated, GenerateError> {
    let bad = GenerateError::BadRequest;
    if !req.envelope_sender.is_empty() {
        mime::parse_address(&req.envelope_sender)
            .map_err(|e| bad(format!("envelope_sender: {e}")))?;
    }
    if req.recipients.is_empty() {
        return Err(bad("recipients is empty".into()));
    }
    let mut failed = InjectOutcome::default();
    let mut messages = Vec::new();
    let mut total = 0usize;
    let mut account = |n: usize| -> Result<(), GenerateError> {
        total = total.saturating_add(n);
        if total > limit {
            Err(GenerateError::TooLarge)
        } else {
            Ok(())
        }
    };
    match &req.content {
        Content::Rfc822(text) => {
            if !looks_like_message(text) {
                return Err(bad(
                    "content is not an RFC 5322 message: it must start with a header field such as \"Subject: ...\"".into(),
                ));
            }
            let template =
                compile(text, req.template_dialect).map_err(|e| bad(format!("content: {e}")))?;
            let mut shared = Vec::new();
            for r in &req.recipients {
                if let Err(e) = mime::parse_address(&r.email) {
                    failed.fail(&r.email, &e);
                    continue;
                }
                if template.is_static() {
                    shared.push(r.email.clone());
                    continue;
                }
                match template.render(&variables(&req.substitutions, r), Escape::None) {
                    Ok(out) => {
                        let content = mime::normalize_crlf(&out).into_bytes();
                        account(content.len())?;
                        messages.push(InjectMessage {
                            recipients: vec![r.email.clone()],
                            content,
                        });
                    }
                    Err(e) => failed.fail(&r.email, &e),
                }
            }
            if !shared.is_empty() {
                let content = mime::normalize_crlf(text).into_bytes();
                account(content.len())?;
                messages.push(InjectMessage {
                    recipients: shared,
                    content,
                });
            }
        }
        Content::Builder(b) => {
            let compiled =
                compile_builder(b, &req.envelope_sender, req.template_dialect).map_err(bad)?;
            for r in &req.recipients {
                if let Err(e) = mime::parse_address(&r.email) {
                    failed.fail(&r.email, &e);
                    continue;
                }
                match compiled.build(r, &variables(&req.substitutions, r)) {
                    Ok(content) => {
                        account(content.len())?;
                        messages.push(InjectMessage {
                            recipients: vec![r.email.clone()],
                            content,
                        });
                    }
                    Err(e) => failed.fail(&r.email, &e),
                }
            }
        }
    }
    Ok(Generated {
        envelope_sender: req.envelope_sender.clone(),
        messages,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> InjectV1Request {
        serde_json::from_value(v).unwrap()
    }

    fn s(m: &InjectMessage) -> String {
        String::from_utf8(m.content.clone()).unwrap()
    }

    #[test]
    fn string_content_is_shared_and_crlf() {
        let g = generate(&req(json!({
            "envelope_sender": "noreply@example.com",
            "content": "Subject: hello\n\nHello there",
            "recipients": [{"email": "a@example.com"}, {"email": "b@example.com"}],
        })))
        .unwrap();
        assert_eq!(g.envelope_sender, "noreply@example.com");
        assert_eq!(g.messages.len(), 1);
        assert_eq!(
            g.messages[0].recipients,
            vec!["a@example.com", "b@example.com"]
        );
        assert_eq!(s(&g.messages[0]), "Subject: hello\r\n\r\nHello there");
        assert_eq!(g.failed, InjectOutcome::default());
    }

    #[test]
    fn string_content_templated_per_recipient() {
        let g = generate(&req(json!({
            "envelope_sender": "noreply@example.com",
            "content": "To: \"{{ name }}\" <{{ email }}>\nSubject: {{ greeting }}\n\nHi {{ name }}, code {{ code }}",
            "substitutions": {"greeting": "hello", "code": 1},
            "recipients": [
                {"email": "a@example.com", "name": "Ann", "substitutions": {"code": 42}},
                {"email": "b@example.com"},
                {"email": "not an address"},
            ],
        })))
        .unwrap();
        assert_eq!(g.messages.len(), 1);
        assert_eq!(
            s(&g.messages[0]),
            "To: \"Ann\" <a@example.com>\r\nSubject: hello\r\n\r\nHi Ann, code 42"
        );
        // b has no name: undefined variable; the bad address fails too.
        assert_eq!(g.failed.fail_count, 2);
        assert_eq!(
            g.failed.failed_recipients,
            vec!["b@example.com", "not an address"]
        );
        assert!(g.failed.errors[0].contains("undefined template variable \"name\""));
    }

    #[test]
    fn static_dialect() {
        let g = generate(&req(json!({
            "envelope_sender": "",
            "template_dialect": "Static",
            "content": "Subject: {% raw %}\n\n{{ x }}",
            "recipients": [{"email": "a@example.com"}],
        })))
        .unwrap();
        assert_eq!(s(&g.messages[0]), "Subject: {% raw %}\r\n\r\n{{ x }}");
        assert_eq!(g.envelope_sender, "");
    }

    #[test]
    fn builder_form() {
        let g = generate(&req(json!({
            "envelope_sender": "bounces@example.com",
            "content": {
                "subject": "Welcome {{ name }}",
                "text_body": "Hello {{ name }}",
                "html_body": "<p>Hello {{ name }}</p>",
                "from": {"email": "news@example.com", "name": "News Team"},
                "reply_to": {"email": "help@example.com"},
                "headers": {"X-Tenant": "mytenant", "X-Id": "{{ id }}"},
            },
            "recipients": [
                {"email": "a@example.net", "name": "<Ann>", "substitutions": {"id": "7"}},
                {"email": "b@example.net", "name": "Bob", "substitutions": {"id": 8}},
            ],
        })))
        .unwrap();
        assert_eq!(g.messages.len(), 2);
        let a = s(&g.messages[0]);
        assert_eq!(g.messages[0].recipients, vec!["a@example.net"]);
        assert!(a.starts_with("From: News Team <news@example.com>\r\nTo: \"<Ann>\" <a@example.net>\r\nSubject: Welcome <Ann>\r\nReply-To: help@example.com\r\nDate: "));
        assert!(a.contains("Message-ID: <"));
        assert!(a.contains("@example.com>\r\n"));
        assert!(a.contains("X-Id: 7\r\n"));
        assert!(a.contains("X-Tenant: mytenant\r\n"));
        assert!(a.contains("multipart/alternative"));
        assert!(a.contains("\r\n\r\nHello <Ann>\r\n"));
        // HTML-escaped in the HTML part.
        assert!(a.contains("<p>Hello &lt;Ann&gt;</p>"));
        let b = s(&g.messages[1]);
        assert!(b.contains("To: Bob <b@example.net>\r\n"));
        assert!(b.contains("X-Id: 8\r\n"));
    }

    #[test]
    fn builder_from_defaults_to_envelope_sender() {
        let g = generate(&req(json!({
            "envelope_sender": "s@example.com",
            "content": {"text_body": "x"},
            "recipients": [{"email": "a@example.net"}],
        })))
        .unwrap();
        assert!(s(&g.messages[0]).starts_with("From: s@example.com\r\nTo: a@example.net\r\n"));
        let e = generate(&req(json!({
            "envelope_sender": "",
            "content": {"text_body": "x"},
            "recipients": [{"email": "a@example.net"}],
        })))
        .unwrap_err();
        assert!(matches!(e, GenerateError::BadRequest(m) if m.contains("content.from")));
    }

    #[test]
    fn request_level_errors() {
        let e = |v: Value| match generate(&req(v)).unwrap_err() {
            GenerateError::BadRequest(m) => m,
            other => panic!("{other:?}"),
        };
        let base = |content: Value| json!({"envelope_sender": "s@example.com", "content": content, "recipients": [{"email": "a@example.net"}]});
        assert!(e(json!({"envelope_sender": "bad", "content": "Subject: x\n\nx", "recipients": [{"email": "a@example.net"}]})).contains("envelope_sender"));
        assert!(e(json!({"envelope_sender": "s@example.com", "content": "Subject: x\n\nx", "recipients": []})).contains("recipients"));
        assert!(e(base(json!("no header here"))).contains("RFC 5322"));
        assert!(e(base(json!("Subject: {% if %}\n\nx"))).contains("Static"));
        assert!(e(base(json!({"subject": "x"}))).contains("text_body"));
        assert!(
            e(base(json!({"text_body": "x", "from": {"email": "bad"}}))).contains("content.from")
        );
        assert!(e(base(
            json!({"text_body": "x", "headers": {"Bad Name": "v"}})
        ))
        .contains("header name"));
        // Header injection through a substitution is a per-recipient failure.
        let g = generate(&req(json!({
            "envelope_sender": "s@example.com",
            "content": {"text_body": "x", "subject": "{{ s }}"},
            "recipients": [{"email": "a@example.net", "substitutions": {"s": "x\r\nBcc: v@example.org"}}],
        })))
        .unwrap();
        assert!(g.messages.is_empty());
        assert_eq!(g.failed.fail_count, 1);
    }

    #[test]
    fn strict_fields() {
        let bad = |v: Value| {
            serde_json::from_value::<InjectV1Request>(v)
                .unwrap_err()
                .to_string()
        };
        assert!(bad(json!({"envelope_sender": "", "content": "Subject: x\n\nx", "recipients": [], "campaign": 1})).contains("campaign"));
        assert!(bad(json!({"envelope_sender": "", "content": {"text_body": "x", "amp_html_body": "y"}, "recipients": []})).contains("amp_html_body"));
        assert!(
            bad(json!({"envelope_sender": "", "content": 3, "recipients": []}))
                .contains("content must be")
        );
        assert!(bad(json!({"envelope_sender": "", "content": "x", "recipients": [], "template_dialect": "Handlebars"})).contains("Handlebars"));
    }

    #[test]
    fn generated_size_limit() {
        let recipients: Vec<Value> = (0..10)
            .map(|i| json!({"email": format!("r{i}@example.net")}))
            .collect();
        let r = req(json!({
            "envelope_sender": "s@example.com",
            "content": {"text_body": "x".repeat(1000)},
            "recipients": recipients,
        }));
        assert!(generate_with_limit(&r, 1_000_000).is_ok());
        assert_eq!(
            generate_with_limit(&r, 5000).unwrap_err(),
            GenerateError::TooLarge
        );
    }

    #[test]
    fn attachments_decoded() {
        let g = generate(&req(json!({
            "envelope_sender": "s@example.com",
            "content": {"text_body": "x", "attachments": [
                {"data": "R0lG\nODlh", "base64": true, "content_type": "image/gif", "file_name": "a.gif"}
            ]},
            "recipients": [{"email": "a@example.net"}],
        })))
        .unwrap();
        assert!(s(&g.messages[0]).contains("R0lGODlh\r\n"));
        let e = generate(&req(json!({
            "envelope_sender": "s@example.com",
            "content": {"text_body": "x", "attachments": [
                {"data": "!!", "base64": true, "content_type": "image/gif"}
            ]},
            "recipients": [{"email": "a@example.net"}],
        })))
        .unwrap_err();
        assert!(matches!(e, GenerateError::BadRequest(m) if m.contains("base64")));
    }
}
