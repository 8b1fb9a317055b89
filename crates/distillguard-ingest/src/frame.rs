//! Framing: finds the JSON records in a body, whatever shape the sender chose.
//!
//! Senders differ: our canonical clients send NDJSON, LiteLLM sends NDJSON labelled
//! `application/json`, Vector and Fluent Bit send arrays, curl users send one object. So the shape
//! is recognised from the content, not the media type.

use std::io::Read;

use serde_json::value::RawValue;

/// Why a body could not be framed at all (HTTP 400 or 413).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the body is empty")]
    Empty,
    #[error("the body is not JSON, a JSON array or NDJSON: {0}")]
    Unframeable(String),
    #[error("the body is larger than {limit} bytes after decompression")]
    TooLarge { limit: usize },
    #[error("the body is not valid gzip: {0}")]
    BadGzip(String),
    /// A body that is one message (an OTLP export request) and does not decode as one.
    #[error("the body is not a valid {message}: {error}")]
    BadMessage {
        message: &'static str,
        error: String,
    },
}

/// One record of a body: its position and its JSON text (or why that text is not JSON).
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// 0-based position among the body's records.
    pub index: usize,
    /// 1-based line number when the body is NDJSON.
    pub line: Option<usize>,
    pub json: Result<&'a RawValue, String>,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Returns the body as plain bytes, inflating gzip (declared, or recognised by its magic bytes).
///
/// Inflation stops one byte past `limit`, so a gzip bomb costs at most `limit` bytes of memory.
pub fn decompress(body: &[u8], declared_gzip: bool, limit: usize) -> Result<Vec<u8>, FrameError> {
    let is_gzip = declared_gzip || body.starts_with(&GZIP_MAGIC);
    if !is_gzip {
        if body.len() > limit {
            return Err(FrameError::TooLarge { limit });
        }
        return Ok(body.to_vec());
    }
    let mut inflated = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| FrameError::BadGzip(e.to_string()))?;
    if inflated.len() > limit {
        return Err(FrameError::TooLarge { limit });
    }
    Ok(inflated)
}

/// Splits a body into records: a JSON array, one JSON value, or NDJSON lines.
pub fn frame(body: &[u8]) -> Result<Vec<RawRecord<'_>>, FrameError> {
    let framed = frame_lazily(body)?;
    let records: Vec<RawRecord<'_>> = framed
        .records
        .into_iter()
        .map(|record| RawRecord {
            index: record.index,
            line: record.line,
            json: record.json.check(),
        })
        .collect();
    if framed.ndjson && records.iter().all(|r| r.json.is_err()) {
        let first_error = records
            .first()
            .and_then(|r| r.json.as_ref().err().cloned())
            .unwrap_or_default();
        return Err(FrameError::Unframeable(first_error));
    }
    Ok(records)
}

/// A record's JSON text: checked while framing (arrays, a single value), or an NDJSON line left
/// for the decoder's own parse to check, so that each line is parsed once (a second parse was
/// about a tenth of replay's time).
#[derive(Debug)]
pub enum LazyJson<'a> {
    Checked(Result<&'a RawValue, String>),
    Unchecked(&'a [u8]),
}

impl<'a> LazyJson<'a> {
    /// The record as JSON text, or the framing error it would have had.
    pub fn check(&self) -> Result<&'a RawValue, String> {
        match self {
            LazyJson::Checked(json) => json.clone(),
            LazyJson::Unchecked(line) => {
                serde_json::from_slice::<&RawValue>(line).map_err(|e| e.to_string())
            }
        }
    }
}

/// One record of a body whose NDJSON lines are not yet checked as JSON.
#[derive(Debug)]
pub struct LazyRecord<'a> {
    pub index: usize,
    pub line: Option<usize>,
    pub json: LazyJson<'a>,
}

/// A framed body. When it is NDJSON and no line turns out to be JSON, the body is unframeable
/// ([`FrameError::Unframeable`] with the first line's error), which only checking can tell.
#[derive(Debug)]
pub struct LazyFrame<'a> {
    pub records: Vec<LazyRecord<'a>>,
    pub ndjson: bool,
}

/// Like [`frame`], leaving NDJSON lines unchecked.
pub fn frame_lazily(body: &[u8]) -> Result<LazyFrame<'_>, FrameError> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Err(FrameError::Empty);
    }
    if trimmed[0] == b'[' {
        let elements: Vec<&RawValue> =
            serde_json::from_slice(trimmed).map_err(|e| FrameError::Unframeable(e.to_string()))?;
        return Ok(checked(elements));
    }
    // A single (possibly pretty-printed) object. For NDJSON this fails after the first line,
    // so the attempt costs one record's parse.
    if let Ok(json) = serde_json::from_slice::<&RawValue>(trimmed) {
        return Ok(checked(vec![json]));
    }
    Ok(LazyFrame {
        records: frame_ndjson(body),
        ndjson: true,
    })
}

/// Records already checked as JSON (array elements, a single value).
fn checked(records: Vec<&RawValue>) -> LazyFrame<'_> {
    LazyFrame {
        records: records
            .into_iter()
            .enumerate()
            .map(|(index, json)| LazyRecord {
                index,
                line: None,
                json: LazyJson::Checked(Ok(json)),
            })
            .collect(),
        ndjson: false,
    }
}

fn frame_ndjson(body: &[u8]) -> Vec<LazyRecord<'_>> {
    lines(body)
        .enumerate()
        .map(|(line_index, line)| (line_index + 1, line.trim_ascii()))
        .filter(|(_, line)| !line.is_empty())
        .enumerate()
        .map(|(index, (line, text))| LazyRecord {
            index,
            line: Some(line),
            json: LazyJson::Unchecked(text),
        })
        .collect()
}

/// The lines of a body split at `\n`, as `body.split(|b| *b == b'\n')` yields them (a final
/// empty line after a trailing newline included), found with `memchr`: a byte-at-a-time split
/// was a twentieth of replay's CPU time.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', body);
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match ends.next() {
            Some(end) => {
                let line = &body[start..end];
                start = end + 1;
                Some(line)
            }
            None => {
                done = true;
                Some(&body[start..])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_split_exactly_as_a_split_at_newlines_does() {
        let bodies: [&[u8]; 7] = [
            b"",
            b"\n",
            b"a",
            b"a\n",
            b"\n\na\nbb\n\nccc",
            b"{\"a\":1}\r\n{\"a\":2}\n\n",
            &[b'x'; 100],
        ];
        for body in bodies {
            let expected: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
            assert_eq!(lines(body).collect::<Vec<_>>(), expected, "{body:?}");
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_single_pretty_printed_object_is_one_record() {
        let records = frame(b"{\n  \"a\": 1\n}\n").unwrap();
        assert_eq!(records.len(), 1);
        assert!(records[0].json.is_ok());
    }

    #[test]
    fn an_array_yields_one_record_per_element() {
        let records = frame(b"[{\"a\":1}, {\"a\":2}, 3]").unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].index, 2);
    }

    #[test]
    fn ndjson_keeps_good_lines_and_locates_bad_ones_by_line() {
        let records = frame(b"{\"a\":1}\n\n{\"a\":\n{\"a\":3}\r\n").unwrap();
        assert_eq!(records.len(), 3);
        assert!(records[0].json.is_ok());
        assert!(records[1].json.is_err());
        assert_eq!(records[1].line, Some(3));
        assert_eq!(records[1].index, 1);
        assert!(records[2].json.is_ok());
    }

    #[test]
    fn bodies_with_no_json_at_all_cannot_be_framed() {
        assert!(matches!(
            frame(b"hello\nworld"),
            Err(FrameError::Unframeable(_))
        ));
        assert_eq!(frame(b"  \n ").unwrap_err(), FrameError::Empty);
        assert!(matches!(
            frame(b"[{\"a\":1}"),
            Err(FrameError::Unframeable(_))
        ));
    }

    #[test]
    fn gzip_is_inflated_whether_declared_or_recognised() {
        let packed = gzip(b"{\"a\":1}");
        assert_eq!(decompress(&packed, true, 1024).unwrap(), b"{\"a\":1}");
        assert_eq!(decompress(&packed, false, 1024).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![b' '; 50 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        assert_eq!(
            decompress(&bomb, true, 1024 * 1024).unwrap_err(),
            FrameError::TooLarge { limit: 1024 * 1024 }
        );
    }

    #[test]
    fn plain_bodies_over_the_limit_are_refused() {
        assert_eq!(
            decompress(&[b' '; 11], false, 10).unwrap_err(),
            FrameError::TooLarge { limit: 10 }
        );
    }

    #[test]
    fn truncated_gzip_is_reported_as_bad_gzip() {
        let packed = gzip(b"{\"a\":1}");
        assert!(matches!(
            decompress(&packed[..packed.len() - 6], true, 1024),
            Err(FrameError::BadGzip(_))
        ));
    }
}
