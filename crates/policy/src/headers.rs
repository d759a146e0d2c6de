//! Minimal, byte-exact edits of a message's header block. Policy header
//! edits must not re-encode anything else in the message (a DKIM signature
//! computed later, or by the sender, covers those bytes).

/// Length of the header block including the CRLF that ends the last header
/// (not the blank line). A message without a blank line is all headers.
pub fn header_block_len(data: &[u8]) -> usize {
    if data.starts_with(b"\r\n") {
        return 0;
    }
    match memfind(data, b"\r\n\r\n") {
        Some(i) => i + 2,
        None => data.len(),
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Each header as (start, end) byte offsets, continuation lines included.
pub fn header_spans(data: &[u8]) -> Vec<(usize, usize)> {
    let block = &data[..header_block_len(data)];
    let mut spans = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < block.len() {
        let end = block[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| pos + i + 1)
            .unwrap_or(block.len());
        let continuation = pos > start && matches!(block[pos], b' ' | b'\t');
        if pos > start && !continuation {
            spans.push((start, pos));
            start = pos;
        }
        pos = end;
    }
    if start < block.len() {
        spans.push((start, block.len()));
    }
    spans
}

fn name_of(header: &[u8]) -> &[u8] {
    let colon = header
        .iter()
        .position(|&b| b == b':')
        .unwrap_or(header.len());
    trim(&header[..colon])
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map(|i| i + 1)
        .unwrap_or(start);
    &b[start..end.max(start)]
}

/// The unfolded value of the first header called `name`.
pub fn first_value(data: &[u8], name: &str) -> Option<String> {
    header_spans(data).into_iter().find_map(|(s, e)| {
        let h = &data[s..e];
        if !name_of(h).eq_ignore_ascii_case(name.as_bytes()) {
            return None;
        }
        let colon = h.iter().position(|&b| b == b':')?;
        let value: Vec<u8> = h[colon + 1..]
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        Some(String::from_utf8_lossy(trim(&value)).into_owned())
    })
}

/// Every header as (name, unfolded value), in order.
pub fn all(data: &[u8]) -> Vec<(String, String)> {
    header_spans(data)
        .into_iter()
        .filter_map(|(s, e)| {
            let h = &data[s..e];
            let colon = h.iter().position(|&b| b == b':')?;
            let value: Vec<u8> = h[colon + 1..]
                .iter()
                .copied()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect();
            Some((
                String::from_utf8_lossy(name_of(h)).into_owned(),
                String::from_utf8_lossy(trim(&value)).into_owned(),
            ))
        })
        .collect()
}

/// Reject header names and values that would break the header block.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(format!("invalid header name {name:?}"));
    }
    if value.contains(['\r', '\n']) {
        return Err(format!("header {name} value must not contain CR or LF"));
    }
    Ok(())
}

pub fn append(data: &mut Vec<u8>, name: &str, value: &str) {
    let at = header_block_len(data);
    let line = format!("{name}: {value}\r\n");
    data.splice(at..at, line.into_bytes());
}

pub fn prepend(data: &mut Vec<u8>, name: &str, value: &str) {
    let line = format!("{name}: {value}\r\n");
    data.splice(0..0, line.into_bytes());
}

pub fn remove_all(data: &mut Vec<u8>, name: &str) {
    for (s, e) in header_spans(data).into_iter().rev() {
        if name_of(&data[s..e]).eq_ignore_ascii_case(name.as_bytes()) {
            data.drain(s..e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"From: A <a@x.test>\r\nSubject: hello\r\n  world\r\nX-T: 1\r\n\r\nbody\r\nX-T: 2\r\n";

    #[test]
    fn read_and_edit() {
        assert_eq!(first_value(MSG, "subject").as_deref(), Some("hello  world"));
        assert_eq!(first_value(MSG, "X-Missing"), None);
        let mut m = MSG.to_vec();
        append(&mut m, "X-New", "v");
        assert!(m.starts_with(
            b"From: A <a@x.test>\r\nSubject: hello\r\n  world\r\nX-T: 1\r\nX-New: v\r\n\r\nbody"
        ));
        remove_all(&mut m, "x-t");
        assert_eq!(first_value(&m, "X-T"), None);
        assert!(m.ends_with(b"\r\n\r\nbody\r\nX-T: 2\r\n"));
        prepend(&mut m, "Received", "x");
        assert!(m.starts_with(b"Received: x\r\nFrom:"));
        assert!(validate("X-A", "b\r\nBcc: c").is_err());
        assert_eq!(
            all(MSG),
            vec![
                ("From".to_string(), "A <a@x.test>".to_string()),
                ("Subject".into(), "hello  world".into()),
                ("X-T".into(), "1".into()),
            ]
        );
        assert!(validate("X A", "b").is_err());
    }
}
