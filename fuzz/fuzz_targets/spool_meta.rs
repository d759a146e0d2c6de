//! The spool's message metadata (`SpoolMeta`, JSON, with the upgrade of
//! format 1 records) from arbitrary bytes, as delivery reads it back from a
//! spool that may be damaged or was written by another version.
//! - decoding never panics, and what it accepts is the current format;
//! - encode then decode is a fixed point (nothing lost or changed);
//! - a format 1 record's labels are those of its `meta` object;
//! - the two ways of reading a label from `meta` (one pass over the text,
//!   and a parsed map) agree, as does `MetaObject::from_json` on the text.
#![no_main]

use ironpost_spool::{MetaObject, SpoolMeta, FORMAT_VERSION};
use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize)]
struct Version {
    version: Option<u32>,
}

fn check_meta_object(m: &MetaObject) {
    // get_str and select read the text as a map, labels skips what it does
    // not need: they can only agree where the map parses. (Known: a number
    // out of f64 range, such as 4e888888, passes RawValue's check but not
    // the map, so then labels still reads it and get_str sees nothing.)
    type Map = serde_json::Map<String, serde_json::Value>;
    if serde_json::from_str::<Map>(m.as_json()).is_err() {
        return;
    }
    let labels = m.labels();
    assert_eq!(labels.tenant, m.get_str("tenant"));
    assert_eq!(labels.campaign, m.get_str("campaign"));
    assert_eq!(labels.queue, m.get_str("queue"));
    assert_eq!(labels.routing_domain, m.get_str("routing_domain"));
    assert_eq!(labels.reception_protocol, m.get_str("reception_protocol"));
    if let Some(picked) = m.select(|k| k.len() % 2 == 0) {
        let again = MetaObject::from_json(picked).expect("select gives an object");
        assert!(again.select(|k| k.len() % 2 == 1).is_none());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = MetaObject::from_json(text.to_string()) {
            // The text as given, less the whitespace around the object.
            assert_eq!(m.as_json(), text.trim());
            check_meta_object(&m);
        }
    }

    let Ok(meta) = SpoolMeta::decode(data) else {
        return;
    };
    assert_eq!(meta.version, FORMAT_VERSION);
    if let Some(m) = &meta.meta {
        check_meta_object(m);
        // A record without a version field is format 1, upgraded from
        // its meta object's labels. (Read as SpoolMeta reads it: the text
        // may be invalid UTF-8 in a field that it skips.)
        let version = serde_json::from_slice::<Version>(data).unwrap().version;
        if version.unwrap_or(1) == 1 {
            let labels = m.labels();
            assert_eq!(meta.tenant, labels.tenant);
            assert_eq!(meta.campaign, labels.campaign);
            assert_eq!(meta.queue, labels.queue);
            assert_eq!(meta.routing_domain, labels.routing_domain);
            assert_eq!(meta.reception_protocol, labels.reception_protocol);
        }
    }

    let encoded = meta.encode();
    let again = SpoolMeta::decode(&encoded).expect("re-encoded meta decodes");
    assert_eq!(again.encode(), encoded);
    assert_eq!(again.id, meta.id);
    assert_eq!(again.recipients, meta.recipients);
});
