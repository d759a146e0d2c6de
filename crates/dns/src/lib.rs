//! DNS for delivery: MX resolution with RFC 7505 null MX and RFC 5321
//! implicit MX, address, TLSA and TXT lookups, optional DNSSEC validation
//! (answers say whether they were proven secure, for DANE), and resolver
//! configuration taken from the policy. The loopback test DNS servers are
//! in `ironpost-testkit` (`ironpost_testkit::dns`).

mod resolver;

pub use resolver::{
    Dns, DnsConfig, DnsError, HostAddresses, HostsFile, MxAnswer, MxHost, NameServer,
    ResolverTuning, Secured, ServerOrdering, TlsaRecord, Transport,
};
