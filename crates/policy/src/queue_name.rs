//! Scheduled queue names, as KumoMTA writes them.

/// A scheduled queue's name and its parts, as KumoMTA writes it:
/// `campaign:tenant@domain!routing_domain`, each part but the domain
/// optional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueName {
    pub campaign: Option<String>,
    pub tenant: Option<String>,
    pub domain: String,
    pub routing_domain: Option<String>,
}

impl QueueName {
    pub fn parse(name: &str) -> QueueName {
        let (prefix, rest) = match name.split_once('@') {
            Some((prefix, rest)) => (Some(prefix), rest),
            None => (None, name),
        };
        let (campaign, tenant) = match prefix {
            Some(p) => match p.split_once(':') {
                Some((c, t)) => (Some(c), Some(t)),
                None => (None, Some(p)),
            },
            None => (None, None),
        };
        let (domain, routing_domain) = match rest.split_once('!') {
            Some((d, r)) => (d, Some(r)),
            None => (rest, None),
        };
        let some = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        QueueName {
            campaign: some(campaign),
            tenant: some(tenant),
            domain: domain.to_string(),
            routing_domain: some(routing_domain),
        }
    }

    /// The domain whose MX (or address literal) the mail goes to.
    pub fn destination(&self) -> &str {
        self.routing_domain.as_deref().unwrap_or(&self.domain)
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.campaign, &self.tenant) {
            (Some(c), Some(t)) => write!(f, "{c}:{t}@")?,
            (Some(c), None) => write!(f, "{c}:@")?,
            (None, Some(t)) => write!(f, "{t}@")?,
            (None, None) => {}
        }
        f.write_str(&self.domain)?;
        match &self.routing_domain {
            Some(r) => write!(f, "!{r}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_as_kumomta_writes_them() {
        for name in [
            "example.com",
            "t@example.com",
            "c:t@example.com",
            "c:@example.com",
            "t@example.com!smarthost.test",
            "example.com!smarthost.test",
            "[127.0.0.2]",
            "null",
        ] {
            assert_eq!(QueueName::parse(name).to_string(), name);
        }
        let q = QueueName::parse("c:t@example.com!relay.test");
        assert_eq!(q.campaign.as_deref(), Some("c"));
        assert_eq!(q.tenant.as_deref(), Some("t"));
        assert_eq!(q.domain, "example.com");
        assert_eq!(q.destination(), "relay.test");
        assert_eq!(QueueName::parse("example.com").destination(), "example.com");
    }
}
