//! A small authoritative DNS server on loopback for tests: answers from a
//! zone held in memory over UDP (and TCP, for truncated answers), NXDOMAIN
//! for unknown names, NODATA for known names without the asked type, and
//! SERVFAIL for names marked broken. [`TestZone::cname`] makes a name an
//! alias: queries at it are answered with the CNAME chain followed by the
//! target's answer, as a recursive resolver would.
//!
//! [`TestZone::signed`] makes the server authoritative for a DNSSEC-signed
//! root zone holding every test name directly, signed on the fly with one
//! Ed25519 key that is both KSK and ZSK; [`TestZone::trust_anchor`] is that
//! key as a trust-anchor line. Every RRset comes with its RRSIG when the
//! query has the DO bit, and NXDOMAIN/NODATA come with the SOA and NSEC
//! records that prove them. [`TestZone::insecure`] delegates an unsigned
//! child zone (the root proves it has no DS), and [`TestZone::bogus`]
//! corrupts the signatures of one answer.

use hickory_proto::dnssec::crypto::Ed25519SigningKey;
use hickory_proto::dnssec::rdata::{DNSSECRData, SigInput, DNSKEY, NSEC, RRSIG};
use hickory_proto::dnssec::{Algorithm, SigningKey, TBS};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, TLSA, TXT};
pub use hickory_proto::rr::RecordType;
use hickory_proto::rr::{DNSClass, Name, RData, Record, SerialNumber};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Bound;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const TTL: u32 = 60;

/// The longest CNAME chain the server follows (as resolvers cap them too).
const MAX_CNAME_HOPS: usize = 8;

#[derive(Default)]
struct Zone {
    records: HashMap<(String, RecordType), Vec<RData>>,
    names: HashSet<String>,
    servfail: HashSet<String>,
    /// Set for a signed zone (the root zone, signed with this key).
    key: Option<ZoneKey>,
    /// Apexes of unsigned zones delegated from the signed root.
    insecure: HashSet<String>,
    /// Queries (name, type) whose answers get corrupted signatures.
    bogus: HashSet<(String, RecordType)>,
    /// TTL of unsigned answers (default [`TTL`]); tests that change records
    /// while a daemon runs lower it so its resolver cache lets go quickly.
    ttl: Option<u32>,
    /// (name, type) queries answered with SERVFAIL (other types at the
    /// name are answered as usual).
    servfail_types: HashSet<(String, RecordType)>,
}

#[derive(Clone, Default)]
pub struct TestZone(Arc<Mutex<Zone>>);

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The DNS name for a zone key ("" is the root).
fn dns_name(k: &str) -> Name {
    if k.is_empty() {
        Name::root()
    } else {
        Name::from_ascii(format!("{k}.")).expect("valid name")
    }
}

/// `name` is `zone` or below it (both keys).
fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

struct ZoneKey {
    key: Ed25519SigningKey,
    dnskey: DNSKEY,
    tag: u16,
}

impl ZoneKey {
    fn generate() -> ZoneKey {
        let pkcs8 = Ed25519SigningKey::generate_pkcs8().expect("generate Ed25519 key");
        let key = Ed25519SigningKey::from_pkcs8(&pkcs8).expect("load Ed25519 key");
        // Flags 257 (zone key + SEP): the one key signs everything, so the
        // DNSKEY RRset consists only of trust anchors and hickory never asks
        // for a DS above the root.
        let dnskey = DNSKEY::from_key(&key.to_public_key().expect("public key"));
        let tag = dnskey.calculate_key_tag().expect("key tag");
        ZoneKey { key, dnskey, tag }
    }

    /// The RRSIG over `rdatas` at `owner`; `corrupt` flips signature bits so
    /// validation fails while the record still parses.
    fn rrsig(&self, owner: &Name, rtype: RecordType, rdatas: &[RData], corrupt: bool) -> Record {
        let records: Vec<Record> = rdatas
            .iter()
            .map(|rd| Record::from_rdata(owner.clone(), TTL, rd.clone()))
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let input = SigInput {
            type_covered: rtype,
            algorithm: Algorithm::ED25519,
            num_labels: owner.num_labels(),
            original_ttl: TTL,
            sig_expiration: SerialNumber::new(now.wrapping_add(7 * 86400)),
            // An hour of slack for clock differences between test threads.
            sig_inception: SerialNumber::new(now.wrapping_sub(3600)),
            key_tag: self.tag,
            signer_name: Name::root(),
        };
        let tbs = TBS::from_input(owner, DNSClass::IN, &input, records.iter())
            .expect("to-be-signed data");
        let mut sig = self.key.sign(&tbs).expect("sign");
        if corrupt {
            sig[0] ^= 0xff;
        }
        Record::from_rdata(
            owner.clone(),
            TTL,
            RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
        )
    }
}

fn soa(zone: &str) -> RData {
    let host = |l: &str| dns_name(format!("{l}.{zone}").trim_end_matches('.'));
    // Minimum 60: the negative TTL of denials.
    RData::SOA(SOA::new(
        host("ns"),
        host("hostmaster"),
        1,
        3600,
        600,
        86400,
        TTL,
    ))
}

/// One RRset destined for a response section.
struct RrSet {
    owner: Name,
    rtype: RecordType,
    data: Vec<RData>,
    /// Gets an RRSIG (false in the insecure child zones).
    signed: bool,
}

impl RrSet {
    fn new(owner: Name, rtype: RecordType, data: Vec<RData>) -> RrSet {
        RrSet {
            owner,
            rtype,
            data,
            signed: true,
        }
    }

    fn signed(mut self, signed: bool) -> RrSet {
        self.signed = signed;
        self
    }
}

impl TestZone {
    pub fn new() -> TestZone {
        TestZone::default()
    }

    /// A zone served as the DNSSEC-signed root zone, with a fresh key. Names
    /// are added with the same methods as for an unsigned zone.
    pub fn signed() -> TestZone {
        let zone = TestZone::default();
        zone.0.lock().unwrap().key = Some(ZoneKey::generate());
        zone
    }

    /// The signing key as a trust-anchor file line (`. 3600 IN DNSKEY 257 3
    /// 15 ...`), for `ironpost_dns::DnsConfig::trust_anchor_file`.
    ///
    /// # Panics
    /// If the zone is not signed.
    pub fn trust_anchor(&self) -> String {
        let z = self.0.lock().unwrap();
        let k = z
            .key
            .as_ref()
            .expect("trust_anchor() needs TestZone::signed()");
        format!(". 3600 IN DNSKEY {}\n", k.dnskey)
    }

    fn add(&self, name: &str, t: RecordType, data: RData) -> &Self {
        let mut z = self.0.lock().unwrap();
        z.names.insert(key(name));
        z.records.entry((key(name), t)).or_default().push(data);
        self
    }

    pub fn mx(&self, domain: &str, preference: u16, exchange: &str) -> &Self {
        let ex =
            Name::from_str(&format!("{}.", exchange.trim_end_matches('.'))).expect("valid name");
        self.add(domain, RecordType::MX, RData::MX(MX::new(preference, ex)))
    }

    /// RFC 7505 null MX.
    pub fn null_mx(&self, domain: &str) -> &Self {
        self.add(domain, RecordType::MX, RData::MX(MX::new(0, Name::root())))
    }

    pub fn ip(&self, host: &str, ip: IpAddr) -> &Self {
        match ip {
            IpAddr::V4(v4) => self.add(host, RecordType::A, RData::A(A(v4))),
            IpAddr::V6(v6) => self.add(host, RecordType::AAAA, RData::AAAA(AAAA(v6))),
        }
    }

    /// One TXT record; text over 255 bytes is split into several
    /// character-strings, as DKIM keys are published.
    pub fn txt(&self, name: &str, text: &str) -> &Self {
        let parts: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
        self.add(name, RecordType::TXT, RData::TXT(TXT::from_bytes(parts)))
    }

    /// One TXT record made of exactly these character-strings.
    pub fn txt_strings(&self, name: &str, parts: &[&str]) -> &Self {
        let parts = parts.iter().map(|p| p.to_string()).collect();
        self.add(name, RecordType::TXT, RData::TXT(TXT::new(parts)))
    }

    /// A TLSA record at `name` (e.g. `_25._tcp.mx.example`).
    pub fn tlsa(&self, name: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) -> &Self {
        let tlsa = TLSA::new(
            CertUsage::from(usage),
            Selector::from(selector),
            Matching::from(matching),
            data.to_vec(),
        );
        self.add(name, RecordType::TLSA, RData::TLSA(tlsa))
    }

    /// `alias` is a CNAME for `target`. Queries for any other type at
    /// `alias` are answered with the CNAME followed (up to
    /// [`MAX_CNAME_HOPS`] aliases) by the target's records of that type, or
    /// by the target's denial, as a recursive resolver answers; in a signed
    /// zone every RRset carries its own RRSIG. An alias must have no other
    /// records.
    pub fn cname(&self, alias: &str, target: &str) -> &Self {
        let target = dns_name(&key(target));
        self.add(alias, RecordType::CNAME, RData::CNAME(CNAME(target)))
    }

    /// Unsigned zones: the TTL of every answer (default 60 s).
    pub fn ttl(&self, seconds: u32) -> &Self {
        self.0.lock().unwrap().ttl = Some(seconds);
        self
    }

    /// Remove every record at `name` (the name stops existing unless other
    /// records are added again).
    pub fn remove(&self, name: &str) -> &Self {
        let mut z = self.0.lock().unwrap();
        let k = key(name);
        z.records.retain(|(n, _), _| *n != k);
        z.names.remove(&k);
        self
    }

    /// The name exists but has no records (answers NODATA).
    pub fn exists(&self, name: &str) -> &Self {
        self.0.lock().unwrap().names.insert(key(name));
        self
    }

    pub fn servfail(&self, name: &str) -> &Self {
        self.0.lock().unwrap().servfail.insert(key(name));
        self
    }

    /// Any record at `name` (for types without a method of their own).
    pub fn record(&self, name: &str, data: RData) -> &Self {
        let t = data.record_type();
        self.add(name, t, data)
    }

    /// A PTR record at `name` (e.g. `4.3.2.1.in-addr.arpa`) for `target`.
    pub fn ptr(&self, name: &str, target: &str) -> &Self {
        let target =
            Name::from_str(&format!("{}.", target.trim_end_matches('.'))).expect("valid name");
        self.add(name, RecordType::PTR, RData::PTR(PTR(target)))
    }

    /// Queries for `rtype` at `name` get SERVFAIL (as a resolver reports a
    /// timeout upstream); other types at `name` are answered as usual.
    pub fn servfail_type(&self, name: &str, rtype: RecordType) -> &Self {
        let mut z = self.0.lock().unwrap();
        z.names.insert(key(name));
        z.servfail_types.insert((key(name), rtype));
        self
    }

    /// Signed zones only: make `apex` an unsigned child zone. Its names
    /// (added as usual) are answered without signatures, and the root
    /// proves with NSEC that there is no DS for it, so validators see them
    /// as Insecure rather than Bogus.
    pub fn insecure(&self, apex: &str) -> &Self {
        let mut z = self.0.lock().unwrap();
        z.insecure.insert(key(apex));
        z.names.insert(key(apex));
        self
    }

    /// Signed zones only: every signature in the answer to (`name`, `rtype`)
    /// is corrupted, whether the answer is positive or a denial; so is the
    /// signature of the (`name`, `rtype`) RRset wherever it is served (for a
    /// CNAME: in every answer that goes through it).
    pub fn bogus(&self, name: &str, rtype: RecordType) -> &Self {
        self.0.lock().unwrap().bogus.insert((key(name), rtype));
        self
    }

    fn answer(&self, query: &Message) -> Message {
        let mut resp = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        resp.metadata.authoritative = true;
        resp.metadata.recursion_desired = query.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        if let Some(edns) = &query.edns {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            e.set_dnssec_ok(edns.flags().dnssec_ok);
            resp.set_edns(e);
        }
        let Some(q) = query.queries.first() else {
            resp.metadata.response_code = ResponseCode::FormErr;
            return resp;
        };
        resp.add_query(q.clone());
        let name = key(&q.name().to_ascii());
        let z = self.0.lock().unwrap();
        if z.servfail.contains(&name) || z.servfail_types.contains(&(name.clone(), q.query_type()))
        {
            resp.metadata.response_code = ResponseCode::ServFail;
        } else if let Some(k) = &z.key {
            let dnssec_ok = query.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
            answer_signed(&z, k, q, dnssec_ok, &mut resp);
        } else {
            answer_unsigned(&z, q, &mut resp);
        }
        resp
    }

    /// The UDP reply: truncated (header and question only) when it does not
    /// fit the client's buffer, so the client retries over TCP.
    fn udp_reply(&self, query: &Message) -> Option<Vec<u8>> {
        let mut resp = self.answer(query);
        let bytes = resp.to_vec().ok()?;
        if bytes.len() <= usize::from(query.max_payload()) {
            return Some(bytes);
        }
        resp.answers.clear();
        resp.authorities.clear();
        resp.additionals.clear();
        resp.metadata.truncation = true;
        resp.to_vec().ok()
    }
}

/// An unsigned zone's answer, following CNAMEs.
fn answer_unsigned(z: &Zone, q: &Query, resp: &mut Message) {
    let ttl = z.ttl.unwrap_or(TTL);
    let (hops, target) = chase(z, &key(&q.name().to_ascii()), q.query_type());
    if z.servfail.contains(&target) {
        resp.metadata.response_code = ResponseCode::ServFail;
        return;
    }
    let mut owner = q.name().clone();
    for (_, rd, next) in hops {
        resp.add_answer(Record::from_rdata(owner, ttl, rd));
        owner = next;
    }
    if let Some(rdatas) = z.records.get(&(target.clone(), q.query_type())) {
        for rd in rdatas {
            resp.add_answer(Record::from_rdata(owner.clone(), ttl, rd.clone()));
        }
    } else if !z.names.contains(&target) {
        resp.metadata.response_code = ResponseCode::NXDomain;
    }
}

/// NSEC owners of the signed root zone with the types at each: the apex,
/// every name outside the insecure child zones, and the delegation points
/// (which hold only NS on the parent side).
fn nsec_owners(z: &Zone) -> BTreeMap<Name, Vec<RecordType>> {
    let mut owners: BTreeMap<Name, Vec<RecordType>> = BTreeMap::new();
    owners.insert(Name::root(), vec![RecordType::SOA, RecordType::DNSKEY]);
    for n in &z.names {
        if z.insecure.contains(n) {
            owners.insert(dns_name(n), vec![RecordType::NS]);
        } else if !z.insecure.iter().any(|c| in_zone(n, c)) {
            owners.entry(dns_name(n)).or_default();
        }
    }
    for (n, t) in z.records.keys() {
        if !z.insecure.iter().any(|c| in_zone(n, c)) {
            owners.entry(dns_name(n)).or_default().push(*t);
        }
    }
    owners
}

/// The CNAMEs a `t` query at `n` goes through (none for CNAME queries,
/// which answer the alias itself), as (alias, CNAME data, target) hops, at
/// most [`MAX_CNAME_HOPS`], and the name the chain ends at.
fn chase(z: &Zone, n: &str, t: RecordType) -> (Vec<(String, RData, Name)>, String) {
    let mut hops = Vec::new();
    let mut cur = n.to_string();
    if t == RecordType::CNAME {
        return (hops, cur);
    }
    while hops.len() < MAX_CNAME_HOPS {
        let Some(rd) = z
            .records
            .get(&(cur.clone(), RecordType::CNAME))
            .and_then(|v| v.first())
        else {
            break;
        };
        let RData::CNAME(CNAME(target)) = rd else {
            break;
        };
        let next = key(&target.to_ascii());
        hops.push((cur, rd.clone(), target.clone()));
        cur = next;
    }
    (hops, cur)
}

/// The insecure child zone `n` is in, if any (the DS at a delegation point
/// is the parent's to answer).
fn cut_of<'a>(z: &'a Zone, n: &str, t: RecordType) -> Option<&'a String> {
    z.insecure
        .iter()
        .filter(|c| in_zone(n, c))
        .max_by_key(|c| c.len())
        .filter(|c| !(**c == n && t == RecordType::DS))
}

/// The sections answering one name, before signing.
#[derive(Default)]
struct Resolved {
    answers: Vec<RrSet>,
    authorities: Vec<RrSet>,
    nxdomain: bool,
}

/// Answer from the signed root zone or, below an insecure delegation, from
/// the unsigned child, following CNAMEs as a recursive resolver would: the
/// chain comes first, each CNAME signed where its owner is, then the
/// target's answer.
fn answer_signed(z: &Zone, k: &ZoneKey, q: &Query, dnssec_ok: bool, resp: &mut Message) {
    let n = key(&q.name().to_ascii());
    let t = q.query_type();
    let (hops, target) = chase(z, &n, t);
    if z.servfail.contains(&target) {
        resp.metadata.response_code = ResponseCode::ServFail;
        return;
    }
    let owners = nsec_owners(z);
    let mut answers = Vec::new();
    let mut owner = q.name().clone();
    for (alias, rd, next) in hops {
        let signed = cut_of(z, &alias, RecordType::CNAME).is_none();
        answers.push(RrSet::new(owner, RecordType::CNAME, vec![rd]).signed(signed));
        owner = next;
    }
    let aliased = !answers.is_empty();
    let mut fin = match cut_of(z, &target, t) {
        Some(cut) => resolve_child(z, cut, &target, owner, t),
        None => resolve_signed(z, k, &owners, &target, owner, t),
    };
    answers.append(&mut fin.answers);
    if fin.nxdomain {
        resp.metadata.response_code = ResponseCode::NXDomain;
    }
    if aliased {
        // The target's NSEC records stay out of an aliased answer: hickory
        // checks NSECs against the query name, not the CNAME target, and
        // would call the answer Bogus. It follows the chain with a query of
        // its own for the target instead, which gets the proof.
        fin.authorities.retain(|set| set.rtype != RecordType::NSEC);
    }

    let corrupt_all = z.bogus.contains(&(n, t));
    let emit = |sets: Vec<RrSet>| {
        let mut out = Vec::new();
        for set in sets {
            for rd in &set.data {
                out.push(Record::from_rdata(set.owner.clone(), TTL, rd.clone()));
            }
            if dnssec_ok && set.signed {
                let corrupt =
                    corrupt_all || z.bogus.contains(&(key(&set.owner.to_ascii()), set.rtype));
                out.push(k.rrsig(&set.owner, set.rtype, &set.data, corrupt));
            }
        }
        out
    };
    for r in emit(answers) {
        resp.add_answer(r);
    }
    for r in emit(fin.authorities) {
        resp.add_authority(r);
    }
}

/// The signed root zone's answer for `n` (a key outside the insecure
/// child zones): its `t` RRset at `owner`, or the SOA and NSEC records
/// proving there is none.
fn resolve_signed(
    z: &Zone,
    k: &ZoneKey,
    owners: &BTreeMap<Name, Vec<RecordType>>,
    n: &str,
    owner: Name,
    t: RecordType,
) -> Resolved {
    let qname = dns_name(n);
    let nsec = |owner: &Name| {
        let next = owners
            .range((Bound::Excluded(owner), Bound::Unbounded))
            .next()
            .map_or_else(Name::root, |(o, _)| o.clone());
        let types = owners.get(owner).cloned().unwrap_or_default();
        RrSet::new(
            owner.clone(),
            RecordType::NSEC,
            vec![RData::DNSSEC(DNSSECRData::NSEC(NSEC::new_cover_self(
                next, types,
            )))],
        )
    };
    // The owner sorting right before `name` (the root sorts first).
    let predecessor = |name: &Name| {
        owners
            .range(..name)
            .next_back()
            .map_or_else(Name::root, |(o, _)| o.clone())
    };
    // Descendants follow a name directly in canonical order.
    let empty_non_terminal = |name: &Name| {
        owners
            .range((Bound::Excluded(name), Bound::Unbounded))
            .next()
            .is_some_and(|(o, _)| name.zone_of(o))
    };

    let positive = if n.is_empty() && t == RecordType::DNSKEY {
        Some(vec![RData::DNSSEC(DNSSECRData::DNSKEY(k.dnskey.clone()))])
    } else if n.is_empty() && t == RecordType::SOA {
        Some(vec![soa("")])
    } else if z.insecure.contains(n) {
        None // only a DS query gets here, and there is none
    } else {
        z.records.get(&(n.to_string(), t)).cloned()
    };

    let mut out = Resolved::default();
    if let Some(data) = positive {
        out.answers.push(RrSet::new(owner, t, data));
        return out;
    }
    out.authorities
        .push(RrSet::new(Name::root(), RecordType::SOA, vec![soa("")]));
    if owners.contains_key(&qname) {
        out.authorities.push(nsec(&qname));
    } else if empty_non_terminal(&qname) {
        out.authorities.push(nsec(&predecessor(&qname)));
    } else {
        out.nxdomain = true;
        let mut encloser = qname.base_name();
        while !encloser.is_root()
            && !owners.contains_key(&encloser)
            && !empty_non_terminal(&encloser)
        {
            encloser = encloser.base_name();
        }
        let covering = predecessor(&qname);
        let wildcard = encloser.prepend_label("*").expect("wildcard name");
        let wildcard_covering = predecessor(&wildcard);
        if wildcard_covering != covering {
            out.authorities.push(nsec(&wildcard_covering));
        }
        out.authorities.push(nsec(&covering));
    }
    out
}

/// Unsigned answers for `n` from the child zone at `cut`, with a
/// synthesised NS and SOA at its apex (validators look the NS up to find
/// the zone cut).
fn resolve_child(z: &Zone, cut: &str, n: &str, owner: Name, t: RecordType) -> Resolved {
    let data = z.records.get(&(n.to_string(), t)).cloned().or_else(|| {
        (n == cut).then_some(())?;
        match t {
            RecordType::NS => Some(vec![RData::NS(NS(dns_name(&format!("ns.{cut}"))))]),
            RecordType::SOA => Some(vec![soa(cut)]),
            _ => None,
        }
    });
    let mut out = Resolved::default();
    if let Some(data) = data {
        out.answers.push(RrSet::new(owner, t, data).signed(false));
        return out;
    }
    let exists =
        n == cut || z.names.contains(n) || z.names.iter().any(|o| o.ends_with(&format!(".{n}")));
    out.nxdomain = !exists;
    out.authorities
        .push(RrSet::new(dns_name(cut), RecordType::SOA, vec![soa(cut)]).signed(false));
    out
}

/// A running server; stops when dropped.
pub struct TestDnsServer {
    pub addr: SocketAddr,
    pub zone: TestZone,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestDnsServer {
    pub async fn start(zone: TestZone) -> std::io::Result<TestDnsServer> {
        // UDP and TCP on the same port, as resolvers expect; retry if the
        // TCP side of a fresh UDP port happens to be taken.
        let mut attempt = 0;
        let (sock, listener) = loop {
            let sock = UdpSocket::bind("127.0.0.1:0").await?;
            match TcpListener::bind(sock.local_addr()?).await {
                Ok(listener) => break (sock, listener),
                Err(e) if attempt < 20 && e.kind() == std::io::ErrorKind::AddrInUse => attempt += 1,
                Err(e) => return Err(e),
            }
        };
        let addr = sock.local_addr()?;
        let z = zone.clone();
        let udp = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Some(bytes) = z.udp_reply(&query) {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
        });
        let z = zone.clone();
        let tcp = tokio::spawn(async move {
            // Connection tasks live in the set, so aborting this task
            // (on drop) ends them too.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            conns.spawn(serve_tcp(stream, z.clone()));
                        }
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(TestDnsServer {
            addr,
            zone,
            tasks: vec![udp, tcp],
        })
    }
}

/// Length-prefixed queries on one TCP connection until the client closes.
async fn serve_tcp(mut stream: TcpStream, zone: TestZone) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        let Ok(query) = Message::from_vec(&buf) else {
            return;
        };
        let Ok(bytes) = zone.answer(&query).to_vec() else {
            return;
        };
        let Ok(n) = u16::try_from(bytes.len()) else {
            return;
        };
        let mut out = n.to_be_bytes().to_vec();
        out.extend_from_slice(&bytes);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

impl Drop for TestDnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
