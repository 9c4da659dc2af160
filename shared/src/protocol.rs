//! The protocol's pure rules: Content-Range, upload ids, part sizes, file names and object keys.

use crate::error::ApiError;

pub const MIB: u64 = 1024 * 1024;
/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// S3's largest object.
pub const S3_MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;
/// S3's part numbers run from 1 to this.
pub const S3_MAX_PARTS: u32 = 10_000;
/// Buffered chunks a part may gather; bounds the record size and the reads needed to build one part.
pub const MAX_BUFFERED_CHUNKS: u64 = 1_000;

/// `Content-Range: bytes START-END/TOTAL`, END inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
    pub total: u64,
}

impl ContentRange {
    pub fn parse(header: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::BadRequest(format!("Malformed Content-Range header: {:?}", truncate(header, 100)));
        let rest = header.trim().strip_prefix("bytes").ok_or_else(bad)?;
        let rest = rest.strip_prefix(' ').ok_or_else(bad)?.trim_start();
        let (range, total) = rest.split_once('/').ok_or_else(bad)?;
        let (start, end) = range.split_once('-').ok_or_else(bad)?;
        let number = |s: &str| -> Result<u64, ApiError> {
            // Digits only: no signs, spaces or exponents, and at most 19 so the value fits in u64.
            if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let (start, end, total) = (number(start)?, number(end)?, number(total)?);
        if end < start {
            return Err(ApiError::BadRequest(format!("Content-Range end {end} is before its start {start}")));
        }
        if end >= total {
            return Err(ApiError::BadRequest(format!("Content-Range end {end} must be below the total size {total}")));
        }
        Ok(ContentRange { start, end, total })
    }

    /// The empty range at the end of a `total`-byte file (`None` for an empty file): what a tus upload sends when it
    /// declares its length after its last bytes, to make what it buffered its last part (`upload::tus`).
    pub fn empty_end(total: u64) -> Option<Self> {
        total.checked_sub(1).map(|end| ContentRange { start: total, end, total })
    }

    pub fn chunk_len(&self) -> u64 {
        self.end_exclusive() - self.start
    }

    /// The offset after this chunk.
    pub fn end_exclusive(&self) -> u64 {
        self.end + 1
    }

    pub fn is_last(&self) -> bool {
        self.end_exclusive() == self.total
    }
}

const UPLOAD_ID_LEN: usize = 32;

/// An upload's id: 32 lowercase hex digits (a v4 UUID without dashes), as django-chunked-upload's. Made only by
/// [`UploadId::new`] or [`UploadId::parse`], so an id in hand is safe to put into an S3 key, a DynamoDB key or a log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        UploadId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// An id a client sent. Anything else than an id we could have issued is unknown to us by construction: the same
    /// answer (404) as an id that was never issued.
    pub fn parse(id: &str) -> Result<Self, ApiError> {
        if id.len() == UPLOAD_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(UploadId(id.to_string()))
        } else {
            Err(ApiError::NotFound)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for UploadId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Parses a client's MD5 (32 hex digits, either case) into lowercase hex.
pub fn parse_md5_hex(md5: &str) -> Result<String, ApiError> {
    let md5 = md5.trim();
    if md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(md5.to_ascii_lowercase())
    } else {
        Err(ApiError::BadRequest("md5 must be 32 hexadecimal digits".into()))
    }
}

/// The part size for a file of `total` bytes: at least the configured minimum, large enough that the file needs at
/// most [`S3_MAX_PARTS`] parts, rounded up to whole MiB: every mode numbers its parts 1..N.
pub fn plan_part_size(total: u64, min_part: u64, max_part: u64) -> Result<u64, ApiError> {
    let needed = total.div_ceil(u64::from(S3_MAX_PARTS)).div_ceil(MIB) * MIB;
    let size = needed.max(min_part);
    if size > max_part {
        return Err(ApiError::BadRequest(format!(
            "A file of {total} bytes needs parts over the largest part size ({max_part} bytes)"
        )));
    }
    Ok(size)
}

/// Makes a client's file name safe as the last segment of an object key. Idempotent: a sanitized name is kept as it
/// is, so a key rendered from one names the file the record names.
pub fn sanitize_filename(name: &str) -> String {
    // Browsers on Windows send full paths; keep only the last segment of either separator.
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'))
        .collect();
    let mut cleaned = cleaned.trim().replace("..", "_");
    // Object keys are at most 1024 bytes; leave room for the template around the name.
    if cleaned.len() > MAX_NAME_BYTES {
        let mut cut = MAX_NAME_BYTES;
        while !cleaned.is_char_boundary(cut) {
            cut -= 1;
        }
        cleaned.truncate(cut);
        cleaned.truncate(cleaned.trim_end().len());
    }
    if cleaned.is_empty() || cleaned == "." { "upload".into() } else { cleaned }
}

/// The longest name [`sanitize_filename`] returns, in bytes.
const MAX_NAME_BYTES: usize = 255;
/// S3's longest object key, in bytes.
const S3_MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    UploadId,
    Filename,
    Owner,
}

/// The key template, checked against the buffer prefix once at start-up. Every key it renders begins with its
/// literal prefix (the text before the first placeholder), and that prefix and the buffer prefix part ways within
/// the shorter of the two, so no name can bring a key under the buffer prefix, where the lifecycle rule expires it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    pieces: Vec<Piece>,
}

/// An object's key: a final object's, which only [`KeyTemplate::render`] makes, so it is never under the buffer
/// prefix; or a tus partial upload's ([`ObjectKey::staging`]), always under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where a tus partial upload's object waits for the concatenation that takes it: under the upload's own buffer
    /// prefix, never a finished object's key, so an abort, the cleanup function and the lifecycle rule remove it as
    /// they remove buffered chunks.
    pub fn staging(buffer_prefix: &str, upload_id: &UploadId) -> ObjectKey {
        ObjectKey(format!("{buffer_prefix}{upload_id}/tus-partial"))
    }
}

impl From<ObjectKey> for String {
    fn from(key: ObjectKey) -> String {
        key.0
    }
}

impl KeyTemplate {
    /// Parses `template` (placeholders `{upload_id}`, required, `{filename}` and `{owner}`) for a deployment whose
    /// chunks wait under `buffer_prefix`; the error says what is wrong.
    pub fn parse(template: &str, buffer_prefix: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let Some(open) = rest.find(['{', '}']) else {
                pieces.push(Piece::Literal(rest.to_string()));
                break;
            };
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_string()));
            }
            let end = rest[open..].find('}').map_or(rest.len(), |close| open + close + 1);
            let piece = match &rest[open..end] {
                "{upload_id}" => Piece::UploadId,
                "{filename}" => Piece::Filename,
                "{owner}" => Piece::Owner,
                other => {
                    return Err(format!(
                        "{template:?}: {:?} is not one of {{upload_id}}, {{filename}}, {{owner}}",
                        truncate(other, 40)
                    ));
                }
            };
            rest = &rest[end..];
            pieces.push(piece);
        }
        if !pieces.contains(&Piece::UploadId) {
            // Without the id two uploads of the same name would overwrite each other.
            return Err(format!("{template:?} must contain {{upload_id}}"));
        }
        let prefix = match pieces.first() {
            Some(Piece::Literal(prefix)) => prefix.as_str(),
            _ => "",
        };
        if prefix.is_empty() {
            return Err(format!(
                "{template:?} must begin with text, not a placeholder: a file or owner named like the buffer prefix \
                 {buffer_prefix:?} would put the object where the lifecycle rule expires buffered chunks"
            ));
        }
        if prefix.starts_with(buffer_prefix) || buffer_prefix.starts_with(prefix) {
            return Err(format!(
                "{template:?} must begin with text (before any placeholder) that neither starts with the buffer \
                 prefix {buffer_prefix:?} nor is the start of it; names could otherwise put a finished object \
                 where the lifecycle rule expires buffered chunks"
            ));
        }
        // Literal segments only: a placeholder never renders to "", "." or "..", nor contains '/'.
        if template.starts_with('/') || template.split('/').any(|segment| segment == "." || segment == "..") {
            return Err(format!("{template:?} must not start with '/' nor have a \".\" or \"..\" segment"));
        }
        let longest: usize = pieces
            .iter()
            .map(|piece| match piece {
                Piece::Literal(text) => text.len(),
                Piece::UploadId => UPLOAD_ID_LEN,
                Piece::Filename | Piece::Owner => MAX_NAME_BYTES,
            })
            .sum();
        if longest > S3_MAX_KEY_BYTES {
            return Err(format!("{template:?} renders keys of up to {longest} bytes, over S3's {S3_MAX_KEY_BYTES}"));
        }
        Ok(KeyTemplate { pieces })
    }

    /// The key of an upload. The file and owner names are sanitized here (the owner comes from a token).
    pub fn render(&self, upload_id: &UploadId, filename: &str, owner: &str) -> ObjectKey {
        let mut key = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => key.push_str(text),
                Piece::UploadId => key.push_str(upload_id.as_str()),
                Piece::Filename => key.push_str(&sanitize_filename(filename)),
                Piece::Owner => key.push_str(&sanitize_filename(owner)),
            }
        }
        ObjectKey(key)
    }
}

/// A media type's essence (`type/subtype`, lowercased, without parameters), as RFC 9110 spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType(String);

const OCTET_STREAM: &str = "application/octet-stream";

impl MediaType {
    /// `None` unless `value` is `type/subtype` of token characters, optionally followed by `;` and parameters.
    pub fn parse(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or_default().trim();
        let (kind, subtype) = essence.split_once('/')?;
        let token =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        (essence.len() <= 255 && token(kind) && token(subtype)).then(|| MediaType(essence.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a browser could run script from a document of this type on the origin that serves it, or would
    /// sniff its type (and then perhaps find HTML). Text other than plain text and CSV counts: it is HTML, script,
    /// style sheets or XML, or nothing a browser needs to render.
    fn is_active(&self) -> bool {
        let (kind, subtype) = self.0.split_once('/').unwrap_or_default();
        match kind {
            "text" => !matches!(subtype, "plain" | "csv"),
            // multipart/x-mixed-replace renders its HTML parts; message/rfc822 was rendered as MHTML.
            "multipart" | "message" => true,
            _ => {
                subtype == "xml"
                    || subtype.ends_with("+xml")
                    || subtype.contains("javascript")
                    || subtype.contains("ecmascript")
                    // The types the MIME Sniffing Standard calls undefined: browsers sniff those.
                    || matches!(self.0.as_str(), "unknown/unknown" | "application/unknown" | "*/*")
            }
        }
    }
}

/// The Content-Type to store: the client's if it said something specific, else a guess from the name; but a type
/// a browser would run (see [`MediaType::is_active`]) is stored as `application/octet-stream` unless the operator
/// trusts it. Parameters (a charset) are dropped.
pub fn stored_content_type(declared: Option<&str>, filename: &str, trusted: &[MediaType]) -> String {
    let chosen = declared
        .and_then(MediaType::parse)
        .filter(|t| t.as_str() != OCTET_STREAM)
        .or_else(|| MediaType::parse(mime_guess::from_path(filename).first_or_octet_stream().essence_str()));
    match chosen {
        Some(t) if !t.is_active() || trusted.contains(&t) => t.0,
        _ => OCTET_STREAM.into(),
    }
}

/// `Content-Disposition: attachment` naming the file (RFC 6266): `filename` an ASCII fallback for old clients,
/// `filename*` the name itself (RFC 8187, UTF-8 percent-encoded).
pub fn attachment_disposition(filename: &str) -> String {
    // Quotes and backslashes would end or escape the quoted string; '%' is percent-decoded by some clients.
    let fallback: String = filename
        .chars()
        .map(|c| if c.is_ascii() && !c.is_ascii_control() && !matches!(c, '"' | '\\' | '%') { c } else { '_' })
        .collect();
    let mut encoded = String::with_capacity(filename.len() * 3);
    for byte in filename.bytes() {
        // RFC 8187's attr-char: everything else is percent-encoded.
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

fn truncate(s: &str, max: usize) -> &str {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(ContentRange::parse("bytes 0-99/1000").unwrap(), ContentRange { start: 0, end: 99, total: 1000 });
        let r = ContentRange::parse("bytes 900-999/1000").unwrap();
        assert!(r.is_last());
        assert_eq!(r.chunk_len(), 100);
        assert_eq!(r.end_exclusive(), 1000);
    }

    #[test]
    fn content_range_rejects() {
        for bad in [
            "",
            "bytes",
            "bytes 0-99",
            "bytes 0-99/*",
            "bytes */1000",
            "items 0-99/1000",
            "bytes -1-99/1000",
            "bytes 0--1/1000",
            "bytes +0-99/1000",
            "bytes 0-99/1e3",
            "bytes 0-99/99999999999999999999999",
            "bytes 0-18446744073709551615/18446744073709551615",
            "bytes 100-99/1000",
            "bytes 0-1000/1000",
            "bytes 0-0/0",
            "bytes 0 - 99/1000",
        ] {
            assert!(ContentRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upload_ids() {
        let id = UploadId::new();
        assert_eq!(UploadId::parse(id.as_str()).unwrap(), id);
        assert!(UploadId::parse("../../etc/passwd").is_err());
        assert!(UploadId::parse(&id.as_str().to_uppercase()).is_err());
        assert!(UploadId::parse("").is_err());
    }

    #[test]
    fn md5_hex() {
        assert_eq!(parse_md5_hex("D41D8CD98F00B204E9800998ECF8427E").unwrap(), "d41d8cd98f00b204e9800998ecf8427e");
        assert!(parse_md5_hex("d41d8cd98f00b204e9800998ecf8427").is_err());
        assert!(parse_md5_hex("g41d8cd98f00b204e9800998ecf8427e").is_err());
    }

    #[test]
    fn part_sizes() {
        assert_eq!(plan_part_size(1, MIN_PART_SIZE, MAX_PART_SIZE).unwrap(), MIN_PART_SIZE);
        assert_eq!(plan_part_size(64 * MIB, MIN_PART_SIZE, MAX_PART_SIZE).unwrap(), MIN_PART_SIZE);
        let huge = S3_MAX_OBJECT_SIZE;
        let size = plan_part_size(huge, MIN_PART_SIZE, MAX_PART_SIZE).unwrap();
        assert!(huge.div_ceil(size) <= u64::from(S3_MAX_PARTS));
        assert_eq!(size % MIB, 0);
        assert!(plan_part_size(huge, MIN_PART_SIZE, MIN_PART_SIZE).is_err());
    }

    #[test]
    fn filenames() {
        assert_eq!(sanitize_filename("report.pdf"), "report.pdf");
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\Users\\me\\photo.jpg"), "photo.jpg");
        assert_eq!(sanitize_filename("a\u{0}b\nc\u{202e}.txt"), "abc.txt");
        assert_eq!(sanitize_filename(".."), "_");
        assert_eq!(sanitize_filename("a..b"), "a_b");
        assert_eq!(sanitize_filename(""), "upload");
        assert_eq!(sanitize_filename("dir/"), "upload");
        assert_eq!(sanitize_filename(&"é".repeat(300)).len(), 254);
        for name in HOSTILE_NAMES.iter().chain(&["é".repeat(300).as_str(), &format!("{} x", "a".repeat(254))]) {
            let once = sanitize_filename(name);
            assert_eq!(sanitize_filename(&once), once, "{name:?}");
        }
    }

    const TEMPLATES: [&str; 4] = [
        "uploads/{upload_id}/{filename}",
        "uploads/{owner}/{upload_id}/{filename}",
        "by-user/{owner}{filename}/{upload_id}",
        "b/{filename}{owner}{upload_id}",
    ];
    const HOSTILE_NAMES: [&str; 14] = [
        "buffer",
        "buffer/",
        "buffer/x",
        "../buffer/x",
        "buffer/../..",
        "/buffer/",
        "..",
        ".",
        "",
        " ",
        "\u{0}buffer",
        "{owner}",
        "{upload_id}",
        "uploads/../../buffer",
    ];

    #[test]
    fn keys_never_fall_under_the_buffer_prefix() {
        let id = UploadId::new();
        for template in TEMPLATES {
            let parsed = KeyTemplate::parse(template, "buffer/").unwrap();
            for filename in HOSTILE_NAMES {
                for owner in HOSTILE_NAMES {
                    let key = parsed.render(&id, filename, owner);
                    let key = key.as_str();
                    assert!(!key.starts_with("buffer/"), "{template} {filename:?} {owner:?}: {key}");
                    assert!(!key.split('/').any(|s| s.is_empty() || s == "." || s == ".."), "{key}");
                    assert!(!key.chars().any(char::is_control), "{key:?}");
                }
            }
        }
        let parsed = KeyTemplate::parse("uploads/{owner}/{upload_id}/{filename}", "buffer/").unwrap();
        assert_eq!(parsed.render(&id, "buffer", "buffer").as_str(), format!("uploads/buffer/{id}/buffer"));
        // A name's braces are its own, never a placeholder.
        assert_eq!(parsed.render(&id, "{owner}", "../x").as_str(), format!("uploads/x/{id}/{{owner}}"));
        assert_eq!(parsed.render(&id, "", "").as_str(), format!("uploads/upload/{id}/upload"));
    }

    #[test]
    fn key_templates_that_could_reach_the_buffer_prefix_are_refused() {
        for (template, buffer) in [
            ("{filename}/{upload_id}", "buffer/"),
            ("{owner}/{upload_id}/{filename}", "buffer/"),
            ("{upload_id}", "buffer/"),
            ("buffer/{upload_id}", "buffer/"),
            ("buffer/done/{upload_id}", "buffer/"),
            ("buffer{upload_id}", "buffer/"),
            ("buf{upload_id}", "buffer/"),
            ("uploads/{owner}/{upload_id}", "uploads/buffer/"),
            ("uploads/b{upload_id}", "uploads/buffer/"),
            ("uploads/{filename}", "buffer/"),
            ("uploads/{upload_id}/{name}", "buffer/"),
            ("uploads/{upload_id", "buffer/"),
            ("uploads/}{upload_id}", "buffer/"),
            ("/uploads/{upload_id}", "buffer/"),
            ("uploads/../buffer/{upload_id}", "buffer/"),
            ("uploads/./{upload_id}", "buffer/"),
        ] {
            assert!(KeyTemplate::parse(template, buffer).is_err(), "{template} with {buffer}");
        }
        let long = format!("uploads/{}/{{upload_id}}/{{filename}}", "a".repeat(800));
        assert!(KeyTemplate::parse(&long, "buffer/").unwrap_err().contains("1024"));
        for (template, buffer) in [
            ("uploads/{upload_id}/{filename}", "buffer/"),
            ("by-user/{owner}/{upload_id}-{filename}", "buffer/"),
            ("bufferx/{upload_id}", "buffer/"),
            ("uploads/{owner}/{upload_id}", "uploads-buffer/"),
            ("uploads/done/{upload_id}", "uploads/buffer/"),
        ] {
            assert!(KeyTemplate::parse(template, buffer).is_ok(), "{template} with {buffer}");
        }
    }

    #[test]
    fn active_content_is_stored_inert() {
        let stored = |declared: Option<&str>, name: &str| stored_content_type(declared, name, &[]);
        for active in [
            "text/html",
            "TEXT/HTML; charset=utf-8",
            "application/xhtml+xml",
            "image/svg+xml",
            "text/xml",
            "application/xml",
            "application/rss+xml",
            "application/javascript",
            "application/x-javascript",
            "application/ecmascript",
            "text/javascript",
            "text/css",
            "text/markdown",
            "multipart/x-mixed-replace; boundary=x",
            "message/rfc822",
            "unknown/unknown",
            "*/*",
        ] {
            assert_eq!(stored(Some(active), "a.bin"), OCTET_STREAM, "{active}");
        }
        // Guessed from the name, or declared as something unparseable: the same rule.
        for (declared, name) in [(None, "page.html"), (None, "x.svg"), (None, "x.js"), (Some("html"), "x.htm")] {
            assert_eq!(stored(declared, name), OCTET_STREAM, "{declared:?} {name}");
        }
        for (declared, name, kept) in [
            (None, "a.png", "image/png"),
            (Some("application/octet-stream"), "a.png", "image/png"),
            (Some("text/csv"), "a.png", "text/csv"),
            (Some("Text/Plain; charset=utf-8"), "a.txt", "text/plain"),
            (Some("application/pdf"), "a", "application/pdf"),
            (Some("video/mp4"), "a", "video/mp4"),
            (Some("application/json"), "a", "application/json"),
            (Some("image/png"), "a.html", "image/png"),
            (Some("not a type"), "a.png", "image/png"),
            (Some("a/b/c"), "a.png", "image/png"),
            (None, "noext", OCTET_STREAM),
        ] {
            assert_eq!(stored(declared, name), kept, "{declared:?} {name}");
        }
        let trusted = [MediaType::parse("text/html").unwrap()];
        assert_eq!(stored_content_type(Some("text/html; charset=utf-8"), "a", &trusted), "text/html");
        assert_eq!(stored_content_type(Some("image/svg+xml"), "a", &trusted), OCTET_STREAM);
    }

    #[test]
    fn media_types() {
        assert_eq!(MediaType::parse(" Image/PNG ; q=1").unwrap().as_str(), "image/png");
        for bad in ["", "image", "image/", "/png", "image/p ng", "image/pñg", "a/b/c"] {
            assert_eq!(MediaType::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn attachment_dispositions() {
        assert_eq!(
            attachment_disposition("report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        assert_eq!(
            attachment_disposition("say \"hi\" \\ 100%.txt"),
            "attachment; filename=\"say _hi_ _ 100_.txt\"; filename*=UTF-8''say%20%22hi%22%20%5C%20100%25.txt"
        );
        assert_eq!(
            attachment_disposition("résumé 日本.pdf"),
            "attachment; filename=\"r_sum_ __.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC.pdf"
        );
        assert_eq!(
            attachment_disposition("a\tb\u{7f};c"),
            "attachment; filename=\"a_b_;c\"; filename*=UTF-8''a%09b%7F%3Bc"
        );
        // Always a valid header value, whatever the name.
        for name in HOSTILE_NAMES.iter().chain(&["\r\nX-Evil: 1", "\u{202e}gpj.exe", "\u{ff}\u{0}"]) {
            let value = attachment_disposition(name);
            assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "{value:?}");
            assert_eq!(value.matches('"').count(), 2, "{value}");
        }
    }
}
