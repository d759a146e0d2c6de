//! `msg:check_fix_conformance(CHECKS, FIXES [, SETTINGS])`, with KumoMTA's
//! contract (docs/reference/message/check_fix_conformance.md):
//!
//! - `CHECKS` and `FIXES` are `|`-separated flag names; every flag KumoMTA
//!   knows is known here (the eight it documents, and
//!   `INVALID_MIME_HEADERS`). An unknown name raises an error, as in
//!   KumoMTA.
//! - The message is parsed and its issues found as KumoMTA's parser finds
//!   them. If an issue is in `CHECKS` and not in `FIXES`, the method returns
//!   the string `Message has conformance issues: A|B` (names sorted) and the
//!   message is unchanged; a message that cannot be parsed at all also
//!   returns a string saying why. Otherwise it returns nil, after fixing the
//!   issues that are in `FIXES`.
//! - Fixing only missing headers (`MISSING_DATE_HEADER`,
//!   `MISSING_MESSAGE_ID_HEADER` as `<id@sender domain>` or the
//!   `message_id` setting, `MISSING_MIME_VERSION`) edits the header block in
//!   place, replacing the first header of that name if it is there but
//!   invalid. Any other fix rebuilds the message: each part's body is
//!   decoded and transfer-encoded again (quoted-printable, or base64 if
//!   smaller; none if the text needs none), line endings become CRLF, header
//!   names lose trailing spaces, headers with 8-bit text are RFC 2047
//!   encoded (8-bit text is read as UTF-8, lossily, as KumoMTA documents)
//!   and long header lines are folded. As KumoMTA warns, this is
//!   best-effort and invalidates signatures over the rebuilt content.
//!
//! **Ironpost** differs from KumoMTA's rebuild in ways that lose less: a
//! text part that declares a character set keeps its bytes and that
//! charset (KumoMTA transcodes to UTF-8); headers with no issue are kept
//! byte for byte; a text part keeps its `Content-Disposition` and
//! `Content-ID`. `SETTINGS.detect_encoding = true` is refused: Ironpost has
//! no character set detector.

use serde::Deserialize;

const FLAG_NAMES: [&str; 9] = [
    "MISSING_COLON_VALUE",
    "NON_CANONICAL_LINE_ENDINGS",
    "NAME_ENDS_WITH_SPACE",
    "LINE_TOO_LONG",
    "NEEDS_TRANSFER_ENCODING",
    "MISSING_DATE_HEADER",
    "MISSING_MESSAGE_ID_HEADER",
    "MISSING_MIME_VERSION",
    "INVALID_MIME_HEADERS",
];

const MISSING_COLON_VALUE: Flags = Flags(1);
const NON_CANONICAL_LINE_ENDINGS: Flags = Flags(1 << 1);
const NAME_ENDS_WITH_SPACE: Flags = Flags(1 << 2);
const LINE_TOO_LONG: Flags = Flags(1 << 3);
const NEEDS_TRANSFER_ENCODING: Flags = Flags(1 << 4);
const MISSING_DATE_HEADER: Flags = Flags(1 << 5);
const MISSING_MESSAGE_ID_HEADER: Flags = Flags(1 << 6);
const MISSING_MIME_VERSION: Flags = Flags(1 << 7);
const INVALID_MIME_HEADERS: Flags = Flags(1 << 8);

/// A set of conformance issues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    fn has(self, f: Flags) -> bool {
        self.0 & f.0 == f.0
    }
    fn intersects(self, f: Flags) -> bool {
        self.0 & f.0 != 0
    }
    fn and(self, f: Flags) -> Flags {
        Flags(self.0 & f.0)
    }
    fn minus(self, f: Flags) -> Flags {
        Flags(self.0 & !f.0)
    }
    fn set(&mut self, f: Flags, on: bool) {
        if on {
            self.0 |= f.0;
        } else {
            self.0 &= !f.0;
        }
    }
    fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// KumoMTA's spelling: names sorted, joined with `|`.
    pub fn names(self) -> String {
        let mut names: Vec<&str> = FLAG_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect();
        names.sort_unstable();
        names.join("|")
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, o: Flags) -> Flags {
        Flags(self.0 | o.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, o: Flags) {
        self.0 |= o.0;
    }
}

/// Parse `A|B|C`; an unknown name is an error listing the known ones.
pub fn parse_flags(spec: &str) -> Result<Flags, String> {
    let mut out = Flags::default();
    for name in spec.split('|').map(str::trim).filter(|s| !s.is_empty()) {
        match FLAG_NAMES.iter().position(|n| *n == name) {
            Some(i) => out.0 |= 1 << i,
            None => {
                let mut known: Vec<String> = FLAG_NAMES.iter().map(|n| format!("'{n}'")).collect();
                known.sort_unstable();
                return Err(format!(
                    "invalid MessageConformance flag '{name}', possible values are {}",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

/// The optional third argument.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    detect_encoding: bool,
    /// Only consulted by the detector, as in KumoMTA.
    #[serde(default)]
    #[allow(dead_code)]
    include_encodings: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    exclude_encodings: Vec<String>,
    /// The id (without angle brackets) for a missing Message-ID.
    #[serde(default)]
    pub message_id: Option<String>,
}

impl Settings {
    pub fn from_lua(lua: &mlua::Lua, v: Option<mlua::Value>) -> Result<Settings, String> {
        let settings: Settings = match v {
            None | Some(mlua::Value::Nil) => Settings::default(),
            Some(v) => crate::kumo::parse_options(lua, "msg:check_fix_conformance", v)
                .map_err(|e| e.to_string())?,
        };
        if settings.detect_encoding {
            return Err(
                "msg:check_fix_conformance: detect_encoding = true: Ironpost does not \
                        support detect_encoding (it has no character set detector); 8-bit \
                        text is read as UTF-8"
                    .into(),
            );
        }
        Ok(settings)
    }
}

// ---------------------------------------------------------------------
// Parsing, as KumoMTA's mailparsing parses (offsets into the message).

#[derive(Debug, Clone)]
struct Header {
    /// The whole header, continuation lines and line ending included.
    start: usize,
    end: usize,
    name: (usize, usize),
    value: (usize, usize),
    flags: Flags,
}

#[derive(Debug)]
struct Part {
    headers: Vec<Header>,
    body: (usize, usize),
    flags: Flags,
    children: Vec<Part>,
}

fn header_parse_error(msg: impl std::fmt::Display) -> String {
    format!("invalid header: {msg}")
}

/// One header starting at `at`; returns it and where the next begins.
fn parse_header(d: &[u8], at: usize, end: usize) -> Result<(Header, usize), String> {
    #[derive(PartialEq)]
    enum St {
        Name,
        Separator,
        Value,
        NewLine,
    }
    if at >= end {
        return Err(header_parse_error("empty header string"));
    }
    if d[at].is_ascii_whitespace() {
        return Err(header_parse_error("header cannot start with space"));
    }
    let mut st = St::Name;
    let mut flags = Flags::default();
    let (mut name_end, mut value_start, mut value_end) = (None, at, at);
    let (mut saw_cr, mut line_start, mut max_line) = (false, at, 0usize);
    let mut i = at;
    'scan: while i < end {
        let c = d[i];
        loop {
            match st {
                St::Name => {
                    if c == b':' {
                        name_end.get_or_insert(i);
                        st = St::Separator;
                    } else if c == b' ' || c == b'\t' {
                        name_end.get_or_insert(i);
                        flags |= NAME_ENDS_WITH_SPACE;
                    } else if c == b'\n' {
                        flags |= MISSING_COLON_VALUE;
                        name_end = Some(i);
                        max_line = max_line.max(i - line_start);
                        value_start = i;
                        value_end = i;
                        i += 1;
                        break 'scan;
                    } else if c != b'\r' && !(33..=126).contains(&c) {
                        return Err(header_parse_error(format!(
                            "header name must be comprised of printable US-ASCII characters. Found {c:?}"
                        )));
                    }
                }
                St::Separator => {
                    if c != b' ' {
                        value_start = i;
                        value_end = i;
                        st = St::Value;
                        continue;
                    }
                }
                St::Value => {
                    if c == b'\n' {
                        if !saw_cr {
                            flags |= NON_CANONICAL_LINE_ENDINGS;
                        }
                        st = St::NewLine;
                        saw_cr = false;
                        max_line = max_line.max(i - line_start);
                        line_start = i + 1;
                    } else if c != b'\r' {
                        value_end = i + 1;
                        saw_cr = false;
                    } else {
                        saw_cr = true;
                    }
                }
                St::NewLine => {
                    if c == b' ' || c == b'\t' {
                        st = St::Value;
                        continue;
                    }
                    break 'scan;
                }
            }
            break;
        }
        i += 1;
    }
    max_line = max_line.max(i - line_start);
    if max_line > 78 {
        flags |= LINE_TOO_LONG;
    }
    let name_end = name_end.unwrap_or_else(|| {
        flags |= MISSING_COLON_VALUE;
        i
    });
    Ok((
        Header {
            start: at,
            end: i,
            name: (at, name_end),
            value: (value_start, value_end.max(value_start)),
            flags,
        },
        i,
    ))
}

/// The header block of `d[at..end]`: the headers, where the body starts,
/// and the issues found.
fn parse_headers(d: &[u8], at: usize, end: usize) -> Result<(Vec<Header>, usize, Flags), String> {
    let mut headers = Vec::new();
    let mut flags = Flags::default();
    let mut i = at;
    while i < end {
        match d[i] {
            b'\n' => {
                i += 1;
                flags |= NON_CANONICAL_LINE_ENDINGS;
                break;
            }
            b'\r' if i + 1 < end && d[i + 1] == b'\n' => {
                i += 2;
                break;
            }
            b'\r' => return Err(header_parse_error("lone CR in header")),
            b if headers.is_empty() && b.is_ascii_whitespace() => {
                return Err(header_parse_error(
                    "header block must not start with spaces",
                ))
            }
            _ => {}
        }
        let (h, next) = parse_header(d, i, end)?;
        flags |= h.flags;
        headers.push(h);
        i = next;
    }
    Ok((headers, i, flags))
}

fn has_lone_cr_or_lf(d: &[u8]) -> bool {
    d.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => d.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || d[i - 1] != b'\r',
        _ => false,
    })
}

fn name_of<'a>(d: &'a [u8], h: &Header) -> &'a [u8] {
    &d[h.name.0..h.name.1]
}

/// The value with line breaks removed (the folding white space stays).
fn value_of(d: &[u8], h: &Header) -> Vec<u8> {
    d[h.value.0..h.value.1]
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

fn first<'a>(d: &[u8], headers: &'a [Header], name: &str) -> Option<&'a Header> {
    headers
        .iter()
        .find(|h| name_of(d, h).eq_ignore_ascii_case(name.as_bytes()))
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).trim().to_string()
}

/// Remove `(comments)` (not nested deeper than one would write).
fn strip_comments(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut depth = 0usize;
    let mut escaped = false;
    for c in v.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' if depth > 0 => escaped = true,
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn valid_date(v: &str) -> bool {
    chrono::DateTime::parse_from_rfc2822(v.trim()).is_ok()
        || chrono::DateTime::parse_from_rfc2822(&strip_comments(v)).is_ok()
}

/// KumoMTA's relaxed msg-id: `<` anything but angle brackets `>`.
fn valid_msg_id(v: &str) -> bool {
    let v = strip_comments(v);
    v.len() >= 2
        && v.starts_with('<')
        && v.ends_with('>')
        && !v[1..v.len() - 1].contains(['<', '>'])
}

/// A MIME header value: `token/token` (or a disposition token) and
/// `; name=value` parameters, raw.
#[derive(Debug, Clone)]
struct Mime {
    value: String,
    params: Vec<(String, String)>,
}

impl Mime {
    fn parse(v: &str) -> Option<Mime> {
        let mut pieces = split_params(v).into_iter();
        let value = strip_comments(&pieces.next()?);
        if value.is_empty() || value.contains(char::is_whitespace) {
            return None;
        }
        let params = pieces
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .filter(|(k, _)| !k.is_empty())
            .collect();
        Some(Mime { value, params })
    }

    fn get(&self, key: &str) -> Option<String> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| unquote(v))
    }

    fn render(&self) -> String {
        let mut s = self.value.clone();
        for (k, v) in &self.params {
            s.push_str("; ");
            s.push_str(k);
            s.push('=');
            s.push_str(&param_value(v));
        }
        s
    }
}

fn split_params(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let (mut quoted, mut escaped) = (false, false);
    for c in v.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ';' && !quoted {
            out.push(String::new());
            continue;
        }
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let mut out = String::new();
        let mut escaped = false;
        for c in v[1..v.len() - 1].chars() {
            if !escaped && c == '\\' {
                escaped = true;
                continue;
            }
            escaped = false;
            out.push(c);
        }
        out
    } else {
        v.to_string()
    }
}

/// A raw parameter value made 7-bit: 8-bit text becomes a quoted RFC 2047
/// word, as KumoMTA does for file names.
fn param_value(raw: &str) -> String {
    if raw.is_ascii() {
        raw.to_string()
    } else {
        format!("\"{}\"", encoded_words(&unquote(raw)).join(" "))
    }
}

fn quote(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// What KumoMTA's `Rfc2045Info` reads from a part's MIME headers.
struct MimeInfo {
    content_type: Option<Mime>,
    encoding: String,
    invalid: bool,
}

impl MimeInfo {
    fn of(d: &[u8], headers: &[Header]) -> MimeInfo {
        let mut invalid = false;
        let get = |n: &str| first(d, headers, n).map(|h| text(&value_of(d, h)));
        let encoding = match get("Content-Transfer-Encoding") {
            Some(v) => {
                let v = strip_comments(&v).to_ascii_lowercase();
                if ["7bit", "8bit", "binary", "quoted-printable", "base64"].contains(&v.as_str()) {
                    v
                } else {
                    invalid = true;
                    "7bit".into()
                }
            }
            None => "7bit".into(),
        };
        let content_type = match get("Content-Type") {
            Some(v) => match Mime::parse(&v).filter(|m| {
                m.value
                    .split_once('/')
                    .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
            }) {
                Some(m) => Some(m),
                None => {
                    invalid = true;
                    None
                }
            },
            None => None,
        };
        if let Some(v) = get("Content-Disposition") {
            invalid |= Mime::parse(&v).is_none();
        }
        if let Some(v) = get("Content-ID") {
            invalid |= !valid_msg_id(&v);
        }
        MimeInfo {
            content_type,
            encoding,
            invalid,
        }
    }

    fn type_is(&self, prefix: &str) -> bool {
        self.content_type.as_ref().is_some_and(|ct| {
            ct.value.len() >= prefix.len() && ct.value[..prefix.len()].eq_ignore_ascii_case(prefix)
        })
    }

    fn is_text(&self) -> bool {
        self.content_type.is_none() || self.type_is("text/")
    }

    fn boundary(&self) -> Option<String> {
        if !self.type_is("multipart/") {
            return None;
        }
        self.content_type.as_ref()?.get("boundary")
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn parse_part(d: &[u8], start: usize, end: usize, top: bool) -> Result<Part, String> {
    let (headers, body_start, mut flags) = parse_headers(d, start, end)?;
    let bytes = &d[start..end];
    if !bytes.is_ascii() {
        flags |= NEEDS_TRANSFER_ENCODING;
    }
    let mut prev = 0;
    for (i, _) in bytes.iter().enumerate().filter(|(_, &b)| b == b'\n') {
        if i - prev > 78 {
            flags |= LINE_TOO_LONG;
            break;
        }
        prev = i;
    }
    flags.set(NON_CANONICAL_LINE_ENDINGS, has_lone_cr_or_lf(bytes));
    if top {
        let get = |n: &str| first(d, &headers, n).map(|h| text(&value_of(d, h)));
        flags.set(
            MISSING_DATE_HEADER,
            !get("Date").is_some_and(|v| valid_date(&v)),
        );
        flags.set(
            MISSING_MESSAGE_ID_HEADER,
            !get("Message-ID").is_some_and(|v| valid_msg_id(&v)),
        );
        flags.set(
            MISSING_MIME_VERSION,
            get("Mime-Version").as_deref() != Some("1.0"),
        );
    }
    let info = MimeInfo::of(d, &headers);
    if info.invalid {
        flags |= INVALID_MIME_HEADERS;
    }
    let mut children = Vec::new();
    if let Some(boundary) = info.boundary() {
        // As KumoMTA: delimiters are "\n--boundary", searched from the
        // newline that ends the header block.
        let delim = format!("\n--{boundary}");
        let raw = body_start.saturating_sub(1).max(start);
        let body = &d[raw..end];
        let mut delims = std::iter::successors(find(body, delim.as_bytes(), 0), |p| {
            find(body, delim.as_bytes(), p + 1)
        });
        if let Some(first) = delims.next() {
            let mut boundary_end = first + delim.len();
            while let Some(part_start) = body[boundary_end..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|p| p + boundary_end + 1)
            {
                let part_end = delims
                    .find(|&p| p + 1 >= part_start)
                    .map(|p| p + 1)
                    .unwrap_or(body.len());
                let child = parse_part(d, raw + part_start, raw + part_end, false)?;
                flags |= child.flags;
                children.push(child);
                boundary_end = part_end - 1 + delim.len();
                if boundary_end + 2 > body.len() {
                    break;
                }
                if &body[boundary_end..boundary_end + 2] == b"--" {
                    break;
                }
            }
        }
    }
    Ok(Part {
        headers,
        body: (body_start, end),
        flags,
        children,
    })
}

// ---------------------------------------------------------------------
// Bodies.

fn decode_base64(input: &[u8]) -> Result<Vec<u8>, String> {
    let mut vals = Vec::with_capacity(input.len());
    let mut pad = 0usize;
    for (i, &b) in input.iter().enumerate() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b' ' | b'\r' | b'\n' | b'\t' => continue,
            b'=' => {
                pad += 1;
                continue;
            }
            other => {
                return Err(format!(
                    "parsing body: base64 decode: invalid symbol {:?} at {i}",
                    other as char
                ))
            }
        };
        if pad > 0 {
            return Err(format!(
                "parsing body: base64 decode: data after padding at {i}"
            ));
        }
        vals.push(v);
    }
    if !(vals.len() + pad).is_multiple_of(4) || pad > 2 || vals.len() % 4 == 1 {
        return Err("parsing body: base64 decode: invalid length".into());
    }
    let mut out = Vec::with_capacity(vals.len() * 3 / 4);
    for chunk in vals.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &v)| acc | (u32::from(v) << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Ok(out)
}

fn encode_base64(input: &[u8]) -> Vec<u8> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut flat = Vec::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                flat.push(A[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                flat.push(b'=');
            }
        }
    }
    let mut out = Vec::with_capacity(flat.len() + flat.len() / 38 + 2);
    for line in flat.chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn hex(b: u8) -> [u8; 3] {
    const H: &[u8; 16] = b"0123456789ABCDEF";
    [b'=', H[(b >> 4) as usize], H[(b & 15) as usize]]
}

/// Quoted-printable, lines of at most 76 characters; CRLF is a line break,
/// any other CR or LF is encoded.
fn encode_qp(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 8);
    let lines: Vec<&[u8]> = split_crlf(input);
    for (n, line) in lines.iter().enumerate() {
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let lit =
                ((33..=126).contains(&b) && b != b'=') || ((b == b' ' || b == b'\t') && !last);
            let piece: &[u8] = if lit { &[b] } else { &hex(b) };
            let room = if last { 76 } else { 75 };
            if col + piece.len() > room {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            out.extend_from_slice(piece);
            col += piece.len();
        }
        if n + 1 < lines.len() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn split_crlf(input: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < input.len() {
        if input[i] == b'\r' && input[i + 1] == b'\n' {
            out.push(&input[start..i]);
            i += 2;
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&input[start..]);
    out
}

fn decode_qp(input: &[u8]) -> Vec<u8> {
    let val = |b: u8| (b as char).to_digit(16).map(|v| v as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'=' {
            match (input.get(i + 1), input.get(i + 2)) {
                (Some(b'\r'), Some(b'\n')) => {
                    i += 3;
                    continue;
                }
                (Some(b'\n'), _) => {
                    i += 2;
                    continue;
                }
                (Some(&a), Some(&b)) => {
                    if let (Some(a), Some(b)) = (val(a), val(b)) {
                        out.push(a << 4 | b);
                        i += 3;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn canonical_crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 16);
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' if input.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn is_utf8_label(c: &str) -> bool {
    matches!(c.to_ascii_lowercase().as_str(), "utf-8" | "utf8")
}

fn is_ascii_label(c: &str) -> bool {
    matches!(
        c.to_ascii_lowercase().as_str(),
        "us-ascii" | "ascii" | "ansi_x3.4-1968" | "iso646-us" | "us"
    )
}

/// Whether KumoMTA's decoder would accept a text body in this charset: an
/// unknown charset, or UTF-8 that is not UTF-8, needs fixing.
fn text_decodes(charset: &str, bytes: &[u8]) -> bool {
    if is_utf8_label(charset) {
        std::str::from_utf8(bytes).is_ok()
    } else {
        is_ascii_label(charset)
            || mail_parser::decoders::charsets::map::charset_decoder(charset.as_bytes()).is_some()
    }
}

// ---------------------------------------------------------------------
// Headers.

/// RFC 2047 `Q` words of at most 75 characters for `s`.
fn encoded_words(s: &str) -> Vec<String> {
    const MAX: usize = 75 - "=?UTF-8?Q??=".len();
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        let mut piece = String::new();
        if c == ' ' {
            piece.push('_');
        } else if c.is_ascii_alphanumeric() || "!*+-/".contains(c) {
            piece.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                piece.push_str(std::str::from_utf8(&hex(b)).unwrap_or_default());
            }
        }
        if cur.len() + piece.len() > MAX && !cur.is_empty() {
            words.push(format!("=?UTF-8?Q?{cur}?="));
            cur.clear();
        }
        cur.push_str(&piece);
    }
    if !cur.is_empty() {
        words.push(format!("=?UTF-8?Q?{cur}?="));
    }
    words
}

/// Unstructured text made 7-bit: each run of words holding 8-bit text
/// becomes encoded words (the spaces inside a run encoded with it).
fn encode_unstructured(v: &str) -> String {
    if v.is_ascii() {
        return v.to_string();
    }
    let words: Vec<&str> = v.split(' ').collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words[i].is_ascii() {
            out.push(words[i].to_string());
            i += 1;
            continue;
        }
        let mut j = i;
        while j + 1 < words.len() && !words[j + 1].is_ascii() {
            j += 1;
        }
        out.push(encoded_words(&words[i..=j].join(" ")).join(" "));
        i = j + 1;
    }
    out.join(" ")
}

const ADDRESS_HEADERS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Bcc",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
    "Resent-Bcc",
];

const ID_HEADERS: &[&str] = &["Message-ID", "References", "In-Reply-To", "Content-ID"];

fn mailbox(name: Option<&str>, addr: &str) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => format!("<{addr}>"),
        Some(n) if n.is_ascii() => {
            let atoms = n.split(' ').all(|w| {
                !w.is_empty()
                    && w.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
            });
            if atoms {
                format!("{n} <{addr}>")
            } else {
                format!(
                    "\"{}\" <{addr}>",
                    n.replace('\\', "\\\\").replace('"', "\\\"")
                )
            }
        }
        Some(n) => format!("{} <{addr}>", encoded_words(n).join(" ")),
    }
}

/// An address list with 8-bit display names made 7-bit.
fn encode_addresses(v: &str) -> String {
    if v.is_ascii() {
        return v.to_string();
    }
    let synthetic = format!("To: {v}\r\n\r\n");
    let parsed = mail_parser::MessageParser::default().parse_headers(synthetic.as_bytes());
    let render = |a: &mail_parser::Addr| Some(mailbox(a.name(), a.address()?));
    let rendered = match parsed.as_ref().and_then(|p| p.to()) {
        Some(mail_parser::Address::List(list)) => list
            .iter()
            .map(render)
            .collect::<Option<Vec<_>>>()
            .map(|l| l.join(", ")),
        Some(mail_parser::Address::Group(groups)) => groups
            .iter()
            .map(|g| {
                let members = g.addresses.iter().map(render).collect::<Option<Vec<_>>>()?;
                let name = g.name.as_deref().unwrap_or_default();
                let name = if name.is_ascii() {
                    name.to_string()
                } else {
                    encoded_words(name).join(" ")
                };
                Some(if name.is_empty() {
                    members.join(", ")
                } else {
                    format!("{name}: {};", members.join(", "))
                })
            })
            .collect::<Option<Vec<_>>>()
            .map(|l| l.join(", ")),
        None => None,
    };
    rendered.unwrap_or_else(|| encode_unstructured(v))
}

/// `Name: value` folded at white space so that lines stay within 76
/// characters where the words allow; CRLF-terminated.
fn fold(name: &str, value: &str) -> Vec<u8> {
    let mut out = format!("{name}:");
    if value.is_empty() {
        out.push_str("\r\n");
        return out.into_bytes();
    }
    let mut col = out.len();
    // Pieces each begin with the white space before them.
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if (c == ' ' || c == '\t') && i > start && !value[start..i].trim().is_empty() {
            pieces.push(&value[start..i]);
            start = i;
        }
    }
    pieces.push(&value[start..]);
    for (n, p) in pieces.iter().enumerate() {
        let p = if n == 0 {
            format!(" {p}")
        } else {
            p.to_string()
        };
        if n > 0 && col + p.len() > 76 {
            out.push_str("\r\n");
            col = 0;
        }
        col += p.len();
        out.push_str(&p);
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A header as the rebuilt message has it: byte for byte if nothing is
/// wrong with it, otherwise normalised and made 7-bit.
fn rebuild_header(d: &[u8], h: &Header) -> Vec<u8> {
    let raw = &d[h.start..h.end];
    let lines_ok = split_crlf(raw).iter().all(|l| l.len() <= 76);
    let clean = !h
        .flags
        .intersects(NAME_ENDS_WITH_SPACE | MISSING_COLON_VALUE | NON_CANONICAL_LINE_ENDINGS)
        && raw.is_ascii()
        && raw.ends_with(b"\r\n")
        && !has_lone_cr_or_lf(raw)
        && lines_ok;
    if clean {
        return raw.to_vec();
    }
    let name = String::from_utf8_lossy(name_of(d, h)).trim().to_string();
    let value = String::from_utf8_lossy(&value_of(d, h)).trim().to_string();
    let is = |list: &[&str]| list.iter().any(|n| n.eq_ignore_ascii_case(&name));
    let value = if is(ADDRESS_HEADERS) {
        encode_addresses(&value)
    } else if is(ID_HEADERS) {
        value
    } else {
        encode_unstructured(&value)
    };
    fold(&name, &value)
}

fn is_mime_header(name: &[u8]) -> bool {
    [
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "Content-ID",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

/// Rebuild one part (and its children) from what was parsed. A child's
/// last line break belongs to the delimiter that follows it.
fn rebuild(d: &[u8], p: &Part, child: bool) -> Result<Vec<u8>, String> {
    let info = MimeInfo::of(d, &p.headers);
    let raw_header = |n: &str| first(d, &p.headers, n).map(|h| text(&value_of(d, h)));
    let mut mime: Vec<(&str, String)> = Vec::new();
    let mut body = Vec::new();
    if !p.children.is_empty() {
        let ct = info.content_type.clone().ok_or_else(|| {
            "parsing body: multipart message has no content-type information!?".to_string()
        })?;
        let boundary = info.boundary().unwrap_or_default();
        for child in &p.children {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            body.extend_from_slice(&rebuild(d, child, true)?);
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        mime.push(("Content-Type", ct.render()));
    } else {
        let mut raw = &d[p.body.0..p.body.1];
        if child {
            raw = raw
                .strip_suffix(b"\r\n")
                .or_else(|| raw.strip_suffix(b"\n"))
                .unwrap_or(raw);
        }
        let decoded = match info.encoding.as_str() {
            "base64" => decode_base64(raw)?,
            "quoted-printable" => decode_qp(raw),
            _ => raw.to_vec(),
        };
        let orig = info.content_type.clone();
        if info.is_text() {
            let declared = orig.as_ref().and_then(|ct| ct.get("charset"));
            let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned().into_bytes();
            let (content, charset) = match declared {
                // 8-bit text in an unlabelled or US-ASCII part: read as
                // UTF-8, lossily (KumoMTA's documented default).
                None => match decoded.is_ascii() {
                    true => (decoded, "us-ascii".to_string()),
                    false => (lossy(&decoded), "utf-8".to_string()),
                },
                Some(c) if is_ascii_label(&c) => match decoded.is_ascii() {
                    true => (decoded, "us-ascii".to_string()),
                    false => (lossy(&decoded), "utf-8".to_string()),
                },
                Some(c) if is_utf8_label(&c) => (lossy(&decoded), c),
                Some(c) => (decoded, c),
            };
            let ascii_compatible = !charset.to_ascii_lowercase().starts_with("utf-16")
                && !charset.to_ascii_lowercase().starts_with("utf-32");
            let mut content = if ascii_compatible {
                canonical_crlf(&content)
            } else {
                content
            };
            let qp = encode_qp(&content);
            let b64_len = encode_base64(&content).len();
            let (mut encoded, cte) = if qp == content {
                (content.split_off(0), None)
            } else if qp.len() <= b64_len {
                (qp, Some("quoted-printable"))
            } else {
                (encode_base64(&content), Some("base64"))
            };
            if !encoded.ends_with(b"\r\n") {
                encoded.extend_from_slice(b"\r\n");
            }
            let mut ct = Mime {
                value: orig
                    .as_ref()
                    .map(|c| c.value.clone())
                    .unwrap_or_else(|| "text/plain".into()),
                params: vec![("charset".into(), quote(&charset))],
            };
            for (k, v) in orig.iter().flat_map(|c| c.params.iter()) {
                if !k.eq_ignore_ascii_case("charset") {
                    ct.params.push((k.clone(), v.clone()));
                }
            }
            mime.push(("Content-Type", ct.render()));
            if let Some(cte) = cte {
                mime.push(("Content-Transfer-Encoding", cte.into()));
            }
            if let Some(cd) = raw_header("Content-Disposition").and_then(|v| Mime::parse(&v)) {
                mime.push(("Content-Disposition", cd.render()));
            }
            body = encoded;
        } else {
            let ct = orig.clone().unwrap_or_else(|| Mime {
                value: "application/octet-stream".into(),
                params: vec![],
            });
            mime.push(("Content-Type", ct.render()));
            mime.push(("Content-Transfer-Encoding", "base64".into()));
            match raw_header("Content-Disposition").and_then(|v| Mime::parse(&v)) {
                Some(cd) => mime.push(("Content-Disposition", cd.render())),
                None => {
                    if let Some(name) = ct.get("name") {
                        mime.push((
                            "Content-Disposition",
                            format!("attachment; filename={}", param_value(&quote(&name))),
                        ));
                    }
                }
            }
            body = encode_base64(&decoded);
        }
        if let Some(cid) = raw_header("Content-ID") {
            mime.push(("Content-ID", cid));
        }
    }
    let mut out = Vec::new();
    let mut mime_done = false;
    for h in &p.headers {
        if is_mime_header(name_of(d, h)) {
            if !mime_done {
                for (n, v) in &mime {
                    out.extend_from_slice(&fold(n, v));
                }
                mime_done = true;
            }
            continue;
        }
        out.extend_from_slice(&rebuild_header(d, h));
    }
    if !mime_done {
        for (n, v) in &mime {
            out.extend_from_slice(&fold(n, v));
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    Ok(out)
}

/// Replace the first header called `name` (keeping its spelling), or add
/// one at the end of the header block.
fn set_header(data: &mut Vec<u8>, name: &str, value: &str) -> Result<(), String> {
    let (headers, _, _) = parse_headers(data, 0, data.len())?;
    match first(data, &headers, name) {
        Some(h) => {
            let spelled = String::from_utf8_lossy(name_of(data, h)).trim().to_string();
            data.splice(h.start..h.end, fold(&spelled, value));
        }
        None => {
            let at = headers.last().map_or(0, |h| h.end);
            let mut line = Vec::new();
            if at > 0 && data[at - 1] != b'\n' {
                line.extend_from_slice(b"\r\n");
            }
            line.extend_from_slice(&fold(name, value));
            if headers.is_empty() && !data.starts_with(b"\r\n") && !data.starts_with(b"\n") {
                line.extend_from_slice(b"\r\n");
            }
            data.splice(at..at, line);
        }
    }
    Ok(())
}

/// The issues KumoMTA would find, including the deep check of each leaf
/// part's body.
fn issues(d: &[u8], p: &Part) -> Flags {
    if !p.children.is_empty() {
        return p.children.iter().fold(p.flags, |acc, c| acc | issues(d, c));
    }
    let info = MimeInfo::of(d, &p.headers);
    let raw = &d[p.body.0..p.body.1];
    let decoded = match info.encoding.as_str() {
        "base64" => match decode_base64(raw) {
            Ok(b) => b,
            Err(_) => return p.flags | NEEDS_TRANSFER_ENCODING,
        },
        "quoted-printable" => decode_qp(raw),
        _ => raw.to_vec(),
    };
    if info.is_text() {
        let charset = info
            .content_type
            .as_ref()
            .and_then(|ct| ct.get("charset"))
            .unwrap_or_else(|| "us-ascii".into());
        if !text_decodes(&charset, &decoded) {
            return p.flags | NEEDS_TRANSFER_ENCODING;
        }
    }
    p.flags
}

/// Run the check and the fixes on `data`. `Err` is raised to Lua (a bad
/// flag); `Ok(Some(reason))` is the failure string the method returns.
pub fn check_fix(
    data: &mut Vec<u8>,
    check: &str,
    fix: &str,
    settings: &Settings,
    default_message_id: &str,
) -> Result<Option<String>, String> {
    let check = parse_flags(check).map_err(|e| format!("msg:check_fix_conformance: {e}"))?;
    let fix = parse_flags(fix).map_err(|e| format!("msg:check_fix_conformance: {e}"))?;
    let part = match parse_part(data, 0, data.len(), true) {
        Ok(p) => p,
        Err(e) => return Ok(Some(e)),
    };
    let found = issues(data, &part);
    // Issues that will be fixed are not reported.
    let problems = check.minus(fix).and(found);
    if !problems.is_empty() {
        return Ok(Some(format!(
            "Message has conformance issues: {}",
            problems.names()
        )));
    }
    let to_fix = fix.and(found);
    if to_fix.is_empty() {
        return Ok(None);
    }
    let headers_only = to_fix
        .minus(MISSING_DATE_HEADER | MISSING_MIME_VERSION | MISSING_MESSAGE_ID_HEADER)
        .is_empty();
    let mut out = if headers_only {
        data.clone()
    } else {
        match rebuild(data, &part, false) {
            Ok(b) => b,
            Err(e) => return Ok(Some(e)),
        }
    };
    let edit = |out: &mut Vec<u8>, name: &str, value: &str| -> Result<(), String> {
        set_header(out, name, value)
    };
    let result = (|| {
        if to_fix.has(MISSING_DATE_HEADER) {
            edit(&mut out, "Date", &chrono::Utc::now().to_rfc2822())?;
        }
        if to_fix.has(MISSING_MIME_VERSION) {
            edit(&mut out, "Mime-Version", "1.0")?;
        }
        if to_fix.has(MISSING_MESSAGE_ID_HEADER) {
            let id = settings.message_id.as_deref().unwrap_or(default_message_id);
            edit(&mut out, "Message-ID", &format!("<{id}>"))?;
        }
        Ok::<(), String>(())
    })();
    if let Err(e) = result {
        return Ok(Some(e));
    }
    *data = out;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MimeHeaders;

    fn run(msg: &[u8], check: &str, fix: &str) -> (Option<String>, Vec<u8>) {
        let mut d = msg.to_vec();
        let r = check_fix(&mut d, check, fix, &Settings::default(), "id1@example.test").unwrap();
        (r, d)
    }

    fn found(msg: &[u8]) -> String {
        let p = parse_part(msg, 0, msg.len(), true).unwrap();
        issues(msg, &p).names()
    }

    #[test]
    fn flags_parse_like_kumomta() {
        assert_eq!(
            parse_flags("LINE_TOO_LONG|MISSING_COLON_VALUE").unwrap(),
            LINE_TOO_LONG | MISSING_COLON_VALUE
        );
        assert_eq!(parse_flags("").unwrap(), Flags::default());
        assert_eq!(
            parse_flags("LINE_TOO_LONG|spoon").unwrap_err(),
            "invalid MessageConformance flag 'spoon', possible values are \
            'INVALID_MIME_HEADERS', \
            'LINE_TOO_LONG', 'MISSING_COLON_VALUE', 'MISSING_DATE_HEADER', \
            'MISSING_MESSAGE_ID_HEADER', 'MISSING_MIME_VERSION', 'NAME_ENDS_WITH_SPACE', \
            'NEEDS_TRANSFER_ENCODING', 'NON_CANONICAL_LINE_ENDINGS'"
        );
        assert_eq!(
            (LINE_TOO_LONG | NEEDS_TRANSFER_ENCODING).names(),
            "LINE_TOO_LONG|NEEDS_TRANSFER_ENCODING"
        );
    }

    /// KumoMTA's mailparsing `header_parsing` case.
    #[test]
    fn header_issues() {
        let m = b"Subject: hello there\nFrom:  Someone <someone@example.com>\n\nI am the body";
        let (h, body, flags) = parse_headers(m, 0, m.len()).unwrap();
        assert_eq!(&m[body..], b"I am the body");
        assert_eq!(flags, NON_CANONICAL_LINE_ENDINGS);
        assert_eq!(h.len(), 2);
        assert_eq!(name_of(m, &h[1]), b"From");
        assert_eq!(value_of(m, &h[1]), b"Someone <someone@example.com>");

        assert!(found(b"Subject\r\nFrom: a@b\r\n\r\nx\r\n").contains("MISSING_COLON_VALUE"));
        assert!(found(b"Subject : x\r\n\r\nx\r\n").contains("NAME_ENDS_WITH_SPACE"));
        assert_eq!(
            found(
                b"Date: Tue, 1 Jul 2003 10:52:37 +0200 (CEST)\r\nMessage-ID: <a@b>\r\nMime-Version: 1.0\r\n\r\nx\r\n"
            ),
            ""
        );
        assert_eq!(
            found(b"Message-ID: <<1234@example.com>>\r\n\r\nHello"),
            "MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER|MISSING_MIME_VERSION"
        );
        assert!(parse_part(b"Sub\x01ject: x\r\n\r\n", 0, 9, true).is_err());
    }

    #[test]
    fn line_endings_are_fixed() {
        let (r, d) = run(
            b"A: b\nC: d\r\n\r\nx\ry\r\n",
            "NON_CANONICAL_LINE_ENDINGS",
            "",
        );
        assert_eq!(
            r.as_deref(),
            Some("Message has conformance issues: NON_CANONICAL_LINE_ENDINGS")
        );
        assert_eq!(d, b"A: b\nC: d\r\n\r\nx\ry\r\n", "unchanged when failing");
        let (r, d) = run(
            b"A: b\nC: d\r\n\r\nx\ry\r\n",
            "NON_CANONICAL_LINE_ENDINGS",
            "NON_CANONICAL_LINE_ENDINGS",
        );
        assert_eq!(r, None);
        assert!(!has_lone_cr_or_lf(&d), "{}", String::from_utf8_lossy(&d));
        assert!(String::from_utf8_lossy(&d).ends_with("\r\n\r\nx\r\ny\r\n"));
        assert_eq!(
            found(&d),
            "MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER|MISSING_MIME_VERSION"
        );
    }

    #[test]
    fn missing_headers_are_added_in_place() {
        let m = b"From: a@b.test\r\nDate: yesterday\r\nSubject: s\r\n\r\nbody\r\n";
        let (r, d) = run(
            m,
            "",
            "MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER|MISSING_MIME_VERSION",
        );
        assert_eq!(r, None);
        let t = String::from_utf8(d.clone()).unwrap();
        assert!(t.starts_with("From: a@b.test\r\nDate: "), "{t}");
        assert!(
            t.ends_with(
                "Subject: s\r\nMime-Version: 1.0\r\nMessage-ID: <id1@example.test>\r\n\r\nbody\r\n"
            ),
            "{t}"
        );
        assert_eq!(found(&d), "");
    }

    #[test]
    fn long_lines_and_8bit_are_reencoded() {
        let long = "word ".repeat(40);
        let m = format!(
            "From: Jürgen <j@example.test>\r\nSubject: Grüße aus Köln {long}\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\nMessage-ID: <a@b>\r\nMime-Version: 1.0\r\n\r\nHällo {long}\r\n"
        );
        let before = found(m.as_bytes());
        assert_eq!(before, "LINE_TOO_LONG|NEEDS_TRANSFER_ENCODING");
        let (r, d) = run(m.as_bytes(), "", "LINE_TOO_LONG|NEEDS_TRANSFER_ENCODING");
        assert_eq!(r, None);
        assert_eq!(found(&d), "", "{}", String::from_utf8_lossy(&d));
        let parsed = mail_parser::MessageParser::default().parse(&d).unwrap();
        assert_eq!(
            parsed.subject().unwrap(),
            format!("Grüße aus Köln {}", long.trim_end())
        );
        assert_eq!(
            parsed.from().unwrap().first().unwrap().name(),
            Some("Jürgen")
        );
        assert_eq!(
            parsed.body_text(0).unwrap().trim_end(),
            format!("Hällo {}", long.trim_end())
        );
    }

    #[test]
    fn multipart_parts_are_rebuilt() {
        let m = b"Content-Type: multipart/mixed; boundary=\"b1\"\r\nMime-Version: 1.0\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nGr\xfc\xdfe\r\n--b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\n\r\n%PDF\x00\x01\r\n--b1--\r\n";
        assert!(found(m).contains("NEEDS_TRANSFER_ENCODING"));
        let (r, d) = run(m, "", "NEEDS_TRANSFER_ENCODING");
        assert_eq!(r, None);
        assert!(d.is_ascii(), "{}", String::from_utf8_lossy(&d));
        let parsed = mail_parser::MessageParser::default().parse(&d).unwrap();
        assert_eq!(parsed.body_text(0).unwrap().trim_end(), "Grüße");
        let att = parsed.attachment(0).unwrap();
        assert_eq!(att.contents(), b"%PDF\x00\x01");
        assert_eq!(att.attachment_name(), Some("a.pdf"));
    }

    #[test]
    fn base64_and_qp_round_trip() {
        for input in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"abcd",
            &[0u8, 255, 7, 128, 3][..],
        ] {
            assert_eq!(decode_base64(&encode_base64(input)).unwrap(), input);
        }
        let text = "x".repeat(200) + "= \r\nend \t";
        let qp = encode_qp(text.as_bytes());
        assert!(split_crlf(&qp).iter().all(|l| l.len() <= 76));
        assert_eq!(decode_qp(&qp), text.as_bytes());
        assert!(decode_base64(b"ab$c").is_err());
    }
}
