//! Who may relay to what. Decisions use the parsed recipient domain; the
//! policy is only consulted for plain domain names, so sender-specified
//! routing can never ride on a domain's `relay_to`.

use ironpost_wire::{Domain, Mailbox, Reply};

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(Reply),
    /// Ask `get_listener_domain` about this domain's `relay_to`.
    AskPolicy(String),
}

pub fn denied() -> Reply {
    Reply::new(550, "5.7.1", "Relaying denied")
}

/// `trusted`: the client is in `relay_hosts`, or the sender's listener
/// domain lists it in `relay_from`.
pub fn check(trusted: bool, rcpt: &Mailbox) -> Verdict {
    if trusted {
        return Verdict::Allow;
    }
    if rcpt.has_routing_syntax() {
        return Verdict::Deny(Reply::new(
            550,
            "5.7.1",
            "Relaying denied: sender-specified routing is not accepted",
        ));
    }
    match &rcpt.domain {
        Some(Domain::Name(d)) => Verdict::AskPolicy(d.clone()),
        Some(Domain::Literal(_)) => Verdict::Deny(Reply::new(
            550,
            "5.7.1",
            "Relaying denied: address literals are not accepted",
        )),
        None => Verdict::Deny(denied()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironpost_wire::address::parse_forward_path;

    fn v(trusted: bool, addr: &str) -> Verdict {
        check(trusted, &parse_forward_path(addr, false).unwrap().0)
    }

    #[test]
    fn tricks_never_reach_relay_to() {
        assert_eq!(
            v(false, "<a@Ours.Test>"),
            Verdict::AskPolicy("ours.test".into())
        );
        for trick in [
            "<victim%evil.test@ours.test>",
            "<evil.test!victim@ours.test>",
            "<\"victim@evil.test\"@ours.test>",
            "<victim@[192.0.2.1]>",
        ] {
            assert!(
                matches!(v(false, trick), Verdict::Deny(r) if r.code == 550),
                "{trick}"
            );
        }
        assert_eq!(
            v(false, "<@ours.test:victim@evil.test>"),
            Verdict::AskPolicy("evil.test".into())
        );
        assert_eq!(v(true, "<victim%evil.test@ours.test>"), Verdict::Allow);
    }
}
