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
/// Parts planned per upload; the rest of S3's part numbers are spare for flush attempts that lose a race or fail.
pub const PLANNED_MAX_PARTS: u64 = 9_000;
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

    pub fn chunk_len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// The offset after this chunk.
    pub fn end_exclusive(&self) -> u64 {
        self.end + 1
    }

    pub fn is_last(&self) -> bool {
        self.end_exclusive() == self.total
    }
}

/// Upload ids are 32 lowercase hex digits (a v4 UUID without dashes), as django-chunked-upload's.
pub fn new_upload_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn validate_upload_id(id: &str) -> Result<(), ApiError> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        // Unknown to us by construction: same answer as an id that was never issued.
        Err(ApiError::NotFound)
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
/// most [`PLANNED_MAX_PARTS`] parts, rounded up to whole MiB.
pub fn plan_part_size(total: u64, min_part: u64, max_part: u64) -> Result<u64, ApiError> {
    let needed = total.div_ceil(PLANNED_MAX_PARTS).div_ceil(MIB) * MIB;
    let size = needed.max(min_part);
    if size > max_part {
        return Err(ApiError::BadRequest(format!(
            "A file of {total} bytes needs parts over the largest part size ({max_part} bytes)"
        )));
    }
    Ok(size)
}

/// Makes a client's file name safe as the last segment of an object key.
pub fn sanitize_filename(name: &str) -> String {
    // Browsers on Windows send full paths; keep only the last segment of either separator.
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'))
        .collect();
    let mut cleaned = cleaned.trim().replace("..", "_");
    // Object keys are at most 1024 bytes; leave room for the template around the name.
    if cleaned.len() > 255 {
        let mut cut = 255;
        while !cleaned.is_char_boundary(cut) {
            cut -= 1;
        }
        cleaned.truncate(cut);
    }
    if cleaned.is_empty() || cleaned == "." { "upload".into() } else { cleaned }
}

/// Renders the key template; `owner` is sanitized like a file name since it comes from a token.
pub fn render_key(template: &str, upload_id: &str, filename: &str, owner: &str) -> String {
    template
        .replace("{upload_id}", upload_id)
        .replace("{filename}", filename)
        .replace("{owner}", &sanitize_filename(owner))
}

/// The content type to store: the client's if it said something specific, else a guess from the name.
pub fn content_type_for(declared: Option<&str>, filename: &str) -> String {
    match declared.map(str::trim) {
        Some(ct) if !ct.is_empty() && ct != "application/octet-stream" && ct.len() <= 255 && ct.is_ascii() => {
            ct.to_string()
        }
        _ => mime_guess::from_path(filename).first_or_octet_stream().to_string(),
    }
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
        let id = new_upload_id();
        assert!(validate_upload_id(&id).is_ok());
        assert!(validate_upload_id("../../etc/passwd").is_err());
        assert!(validate_upload_id(&id.to_uppercase()).is_err());
        assert!(validate_upload_id("").is_err());
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
        assert!(huge.div_ceil(size) <= PLANNED_MAX_PARTS);
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
    }

    #[test]
    fn keys_and_types() {
        assert_eq!(render_key("uploads/{upload_id}/{filename}", "abc", "f.txt", "u"), "uploads/abc/f.txt");
        assert_eq!(render_key("{owner}/{upload_id}", "abc", "f", "../x"), "x/abc");
        assert_eq!(content_type_for(None, "a.png"), "image/png");
        assert_eq!(content_type_for(Some("application/octet-stream"), "a.png"), "image/png");
        assert_eq!(content_type_for(Some("text/csv"), "a.png"), "text/csv");
        assert_eq!(content_type_for(None, "noext"), "application/octet-stream");
    }
}
