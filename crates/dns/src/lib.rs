//! DNS for delivery: MX resolution with RFC 7505 null MX and RFC 5321
//! implicit MX, address, TLSA and TXT lookups, optional DNSSEC validation
//! (answers say whether they were proven secure, for DANE), resolver
//! configuration taken from the policy, and (for tests) a loopback DNS
//! server answering from a zone held in memory, optionally DNSSEC-signed.

mod resolver;
pub mod testserver;

pub use resolver::{
    Dns, DnsConfig, DnsError, HostAddresses, MxAnswer, MxHost, Secured, TlsaRecord,
};
