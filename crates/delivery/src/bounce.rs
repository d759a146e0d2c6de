//! Delivery status notifications (RFC 3464 inside RFC 6522
//! multipart/report), sent with a null sender so they can never bounce.

use crate::model::SharedMessage;

pub struct FailedRecipient {
    pub recipient: String,
    /// Enhanced status such as `5.1.1`.
    pub status: String,
    /// `smtp; 550 5.1.1 No such user`, or a local explanation.
    pub diagnostic: String,
    pub remote_mta: Option<String>,
}

fn boundary(id: &str) -> String {
    format!("ironpost-dsn-{id}")
}

/// Build the DSN for `failed` recipients of `msg`. `original_headers` is the
/// header block of the failed message.
pub fn build_dsn(
    hostname: &str,
    msg: &SharedMessage,
    failed: &[FailedRecipient],
    original_headers: &[u8],
    expired: bool,
) -> Vec<u8> {
    let id = msg.id.to_string();
    let b = boundary(&id);
    let now = chrono::Utc::now().to_rfc2822();
    let mut out = String::new();
    out.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
    ));
    out.push_str(&format!("To: <{}>\r\n", msg.sender));
    out.push_str(if expired {
        "Subject: Undelivered Mail Returned to Sender (delivery time expired)\r\n"
    } else {
        "Subject: Undelivered Mail Returned to Sender\r\n"
    });
    out.push_str(&format!("Date: {now}\r\n"));
    out.push_str(&format!("Message-ID: <dsn.{id}@{hostname}>\r\n"));
    out.push_str("Auto-Submitted: auto-replied\r\n");
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{b}\"\r\n\r\n"
    ));
    out.push_str("This is a MIME-encapsulated message.\r\n\r\n");
    out.push_str(&format!(
        "--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ));
    out.push_str(&format!(
        "This is the mail system at {hostname}.\r\n\r\nYour message could not be delivered to {} recipient(s){}:\r\n\r\n",
        failed.len(),
        if expired { " before it expired" } else { "" }
    ));
    for f in failed {
        out.push_str(&format!(
            "  <{}>: {}\r\n",
            f.recipient,
            sanitize(&f.diagnostic)
        ));
    }
    out.push_str(&format!(
        "\r\n--{b}\r\nContent-Type: message/delivery-status\r\n\r\n"
    ));
    out.push_str(&format!("Reporting-MTA: dns; {hostname}\r\n"));
    out.push_str(&format!("X-Ironpost-Queue-ID: {id}\r\n"));
    if let Some(t) = msg.received_at() {
        out.push_str(&format!("Arrival-Date: {}\r\n", t.to_rfc2822()));
    }
    for f in failed {
        out.push_str("\r\n");
        out.push_str(&format!("Final-Recipient: rfc822; {}\r\n", f.recipient));
        out.push_str("Action: failed\r\n");
        out.push_str(&format!("Status: {}\r\n", f.status));
        if let Some(mta) = &f.remote_mta {
            out.push_str(&format!("Remote-MTA: dns; {mta}\r\n"));
        }
        out.push_str(&format!("Diagnostic-Code: {}\r\n", sanitize(&f.diagnostic)));
    }
    out.push_str(&format!(
        "\r\n--{b}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(original_headers);
    if !original_headers.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    bytes
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
