//! The embedded event log: segment files in `<data_dir>/wal/`.
//!
//! ```text
//! segment file  = "DGWAL001" record*                 named <first position, 20 digits>.wal
//! record        = len: u32 LE | crc32: u32 LE | position: u64 LE | payload (len bytes)
//!                 crc32 covers the position and the payload
//! ```
//!
//! A new segment starts once the current one reaches `segment_bytes`; segments wholly before a
//! checkpoint's position are deleted. On open, the last segment is scanned to its last intact
//! record and anything after that (a write cut short by a crash, never acknowledged) is cut off.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    decode_batch, EventLog, FsyncPolicy, LogError, LogPosition, LoggedBatch, ReplayReport,
};

const MAGIC: &[u8; 8] = b"DGWAL001";
const RECORD_HEADER: usize = 16;
/// A record larger than this is corrupt, not real (bodies are limited far below it).
const MAX_RECORD_BYTES: u32 = 1 << 30;
/// Directory of the log inside the data directory.
pub const DIR: &str = "wal";
/// Segment files roll over at this size by default.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Segment {
    first: u64,
    path: PathBuf,
    len: u64,
}

/// Settings of the segment log.
#[derive(Debug, Clone)]
pub struct WalOptions {
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_millis(100),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// The log in segment files. See the module documentation for the format.
pub struct SegmentLog {
    dir: PathBuf,
    options: WalOptions,
    segments: Vec<Segment>,
    file: File,
    end: u64,
    /// The state at the last successful [`EventLog::sync`]: what has been acknowledged.
    committed: Committed,
    /// Writes not yet forced to disk, and since when (the interval policy).
    unsynced_since: Option<Instant>,
    /// A segment file was created since the directory was last synced.
    dir_dirty: bool,
    /// A background fsync (interval policy) failed: the next sync must succeed at one first.
    fsync_failed: bool,
}

#[derive(Debug, Clone, Copy)]
struct Committed {
    end: u64,
    segments: usize,
    len: u64,
}

impl SegmentLog {
    /// Opens the log in `dir` (created if missing), cutting off a torn tail. Returns the log and
    /// the bytes cut off.
    pub fn open(dir: &Path, options: WalOptions) -> Result<(Self, u64), LogError> {
        fs::create_dir_all(dir)?;
        let mut segments = list_segments(dir)?;
        let mut torn = 0;
        let end = match segments.last_mut() {
            Some(last) => {
                let scan = scan(&last.path, last.first)?;
                if scan.valid_len < last.len {
                    torn = last.len - scan.valid_len;
                    tracing::warn!(
                        segment = %last.path.display(),
                        bytes = torn,
                        "cutting off the end of the event log: a write cut short by a crash (never acknowledged)"
                    );
                    let file = OpenOptions::new().write(true).open(&last.path)?;
                    file.set_len(scan.valid_len)?;
                    file.sync_all()?;
                    last.len = scan.valid_len;
                }
                last.first + scan.records
            }
            None => {
                let segment = create_segment(dir, 0)?;
                sync_dir(dir)?;
                segments.push(segment);
                0
            }
        };
        let last = segments.last().expect("at least one segment");
        let mut file = OpenOptions::new().append(true).open(&last.path)?;
        file.seek(SeekFrom::End(0))?;
        let committed = Committed {
            end,
            segments: segments.len(),
            len: last.len,
        };
        Ok((
            Self {
                dir: dir.to_path_buf(),
                options,
                segments,
                file,
                end,
                committed,
                unsynced_since: None,
                dir_dirty: false,
                fsync_failed: false,
            },
            torn,
        ))
    }

    fn active(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("at least one segment")
    }

    fn roll(&mut self) -> Result<(), LogError> {
        // The finished segment is forced out whatever the policy: one fsync per segment is cheap,
        // and later syncs only look at the active file.
        self.file.sync_data()?;
        let segment = create_segment(&self.dir, self.end)?;
        self.file = OpenOptions::new().append(true).open(&segment.path)?;
        self.segments.push(segment);
        self.dir_dirty = true;
        Ok(())
    }

    fn fsync(&mut self) -> Result<(), LogError> {
        self.file.sync_data()?;
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        self.unsynced_since = None;
        Ok(())
    }

    /// Segment files, for tests and metrics.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

impl EventLog for SegmentLog {
    fn append(&mut self, record: &[u8]) -> Result<LogPosition, LogError> {
        let len = u32::try_from(record.len())
            .ok()
            .filter(|len| *len <= MAX_RECORD_BYTES)
            .ok_or_else(|| LogError::Encode(format!("a batch of {} bytes", record.len())))?;
        if self.active().len >= self.options.segment_bytes {
            self.roll()?;
        }
        let position = self.end;
        let mut frame = Vec::with_capacity(RECORD_HEADER + record.len());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&checksum(position, record).to_le_bytes());
        frame.extend_from_slice(&position.to_le_bytes());
        frame.extend_from_slice(record);
        self.file.write_all(&frame)?;
        self.active().len += frame.len() as u64;
        self.end += 1;
        self.unsynced_since.get_or_insert_with(Instant::now);
        Ok(LogPosition(self.end))
    }

    fn sync(&mut self) -> Result<(), LogError> {
        if self.options.fsync == FsyncPolicy::Always || self.fsync_failed {
            self.fsync()?;
            self.fsync_failed = false;
        }
        self.committed = Committed {
            end: self.end,
            segments: self.segments.len(),
            len: self.segments.last().map_or(0, |s| s.len),
        };
        Ok(())
    }

    fn tick(&mut self) -> Result<(), LogError> {
        let due = self
            .unsynced_since
            .is_some_and(|since| since.elapsed() >= self.options.fsync_interval);
        if self.options.fsync == FsyncPolicy::Interval && due {
            if let Err(error) = self.fsync() {
                self.fsync_failed = true;
                return Err(error);
            }
        }
        Ok(())
    }

    fn discard_unsynced(&mut self) -> Result<(), LogError> {
        let keep = self.committed;
        while self.segments.len() > keep.segments.max(1) {
            let segment = self.segments.pop().expect("more than kept");
            let _ = fs::remove_file(&segment.path);
        }
        let active = self.segments.last_mut().expect("at least one segment");
        let file = OpenOptions::new().write(true).open(&active.path)?;
        file.set_len(keep.len)?;
        active.len = keep.len;
        self.file = OpenOptions::new().append(true).open(&active.path)?;
        self.end = keep.end;
        Ok(())
    }

    fn replay(
        &mut self,
        from: LogPosition,
        each: &mut dyn FnMut(LoggedBatch),
    ) -> Result<ReplayReport, LogError> {
        let mut report = ReplayReport::default();
        let count = self.segments.len();
        for index in 0..count {
            let next_first = self.segments.get(index + 1).map(|s| s.first);
            if next_first.is_some_and(|next| next <= from.0) {
                continue;
            }
            let segment = &self.segments[index];
            let mut reader = BufReader::with_capacity(1 << 20, File::open(&segment.path)?);
            read_magic(&mut reader, &segment.path)?;
            let mut expected = segment.first;
            let mut offset = MAGIC.len() as u64;
            while offset < segment.len {
                let Some((position, payload)) = read_record(&mut reader)? else {
                    break;
                };
                if position != expected {
                    return Err(LogError::Corrupt(format!(
                        "{}: record {position} where {expected} was expected",
                        segment.path.display()
                    )));
                }
                offset += (RECORD_HEADER + payload.len()) as u64;
                expected += 1;
                if position < from.0 {
                    continue;
                }
                let events = decode_batch(&payload)?;
                report.batches += 1;
                report.events += events.len() as u64;
                each(LoggedBatch {
                    end: LogPosition(position + 1),
                    events,
                });
            }
            if offset < segment.len {
                report.torn_bytes += segment.len - offset;
                tracing::error!(
                    segment = %segment.path.display(),
                    offset,
                    "event log segment damaged: its remaining records are skipped"
                );
            }
        }
        Ok(report)
    }

    fn truncate_before(&mut self, before: LogPosition) -> Result<(), LogError> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[1].first <= before.0 {
            let segment = self.segments.remove(0);
            fs::remove_file(&segment.path)?;
            removed += 1;
        }
        self.committed.segments = self.committed.segments.saturating_sub(removed).max(1);
        Ok(())
    }

    fn end(&self) -> LogPosition {
        LogPosition(self.end)
    }

    fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }
}

fn checksum(position: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&position.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

fn create_segment(dir: &Path, first: u64) -> Result<Segment, LogError> {
    let path = segment_path(dir, first);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.write_all(MAGIC)?;
    file.sync_all()?;
    Ok(Segment {
        first,
        path,
        len: MAGIC.len() as u64,
    })
}

fn list_segments(dir: &Path) -> Result<Vec<Segment>, LogError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        segments.push(Segment {
            first,
            path: entry.path(),
            len: entry.metadata()?.len(),
        });
    }
    segments.sort_by_key(|s| s.first);
    Ok(segments)
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn read_magic(reader: &mut impl Read, path: &Path) -> Result<(), LogError> {
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(LogError::Corrupt(format!(
            "{} is not an event log segment of this version",
            path.display()
        )));
    }
    Ok(())
}

/// The next intact record, or `None` at the end or at a damaged record.
fn read_record(reader: &mut impl Read) -> Result<Option<(u64, Vec<u8>)>, LogError> {
    let mut header = [0u8; RECORD_HEADER];
    if !read_full(reader, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let position = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if len > MAX_RECORD_BYTES {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    if !read_full(reader, &mut payload)? || checksum(position, &payload) != crc {
        return Ok(None);
    }
    Ok(Some((position, payload)))
}

/// Fills `buffer`; false if the input ended first.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> Result<bool, LogError> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..])? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}

struct Scan {
    records: u64,
    valid_len: u64,
}

/// Counts the intact records of one segment and where they end.
fn scan(path: &Path, first: u64) -> Result<Scan, LogError> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut magic = [0u8; 8];
    if !read_full(&mut reader, &mut magic)? || &magic != MAGIC {
        return Err(LogError::Corrupt(format!(
            "{} is not an event log segment of this version",
            path.display()
        )));
    }
    let mut scan = Scan {
        records: 0,
        valid_len: MAGIC.len() as u64,
    };
    while let Some((position, payload)) = read_record(&mut reader)? {
        if position != first + scan.records {
            break;
        }
        scan.records += 1;
        scan.valid_len += (RECORD_HEADER + payload.len()) as u64;
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::encode_batch;
    use crate::eventlog::tests::event;

    fn options(segment_bytes: u64) -> WalOptions {
        WalOptions {
            segment_bytes,
            ..WalOptions::default()
        }
    }

    fn replay_all(log: &mut SegmentLog, from: u64) -> Vec<(u64, Vec<String>)> {
        let mut seen = Vec::new();
        log.replay(LogPosition(from), &mut |batch| {
            seen.push((
                batch.end.0,
                batch
                    .events
                    .iter()
                    .map(|e| e.account_id.to_string())
                    .collect(),
            ))
        })
        .unwrap();
        seen
    }

    fn append(log: &mut SegmentLog, account: &str, i: i64) -> LogPosition {
        let record = encode_batch(&[event(account, 1_764_000_000_000 + i)]).unwrap();
        let position = log.append(&record).unwrap();
        log.sync().unwrap();
        position
    }

    #[test]
    fn batches_read_back_in_order_across_segments_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), options(300)).unwrap();
        for i in 0..10 {
            assert_eq!(
                append(&mut log, &format!("a{i}"), i),
                LogPosition(i as u64 + 1)
            );
        }
        assert!(log.segment_count() > 2);
        drop(log);
        let (mut log, torn) = SegmentLog::open(dir.path(), options(300)).unwrap();
        assert_eq!((log.end(), torn), (LogPosition(10), 0));
        let seen = replay_all(&mut log, 7);
        assert_eq!(
            seen,
            vec![
                (8, vec!["a7".to_owned()]),
                (9, vec!["a8".to_owned()]),
                (10, vec!["a9".to_owned()])
            ]
        );
        assert_eq!(append(&mut log, "a10", 10), LogPosition(11));
        assert_eq!(replay_all(&mut log, 0).len(), 11);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_at_open_and_the_log_goes_on_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), options(1 << 20)).unwrap();
        for i in 0..3 {
            append(&mut log, "a", i);
        }
        let path = log.segments[0].path.clone();
        drop(log);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (mut log, torn) = SegmentLog::open(dir.path(), options(1 << 20)).unwrap();
        assert!(torn > 0);
        assert_eq!(log.end(), LogPosition(2));
        append(&mut log, "b", 9);
        let seen = replay_all(&mut log, 0);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].1, vec!["b".to_owned()]);
    }

    #[test]
    fn appends_after_the_last_sync_are_discarded_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), options(250)).unwrap();
        append(&mut log, "kept", 0);
        for i in 0..5 {
            let record = encode_batch(&[event("lost", i)]).unwrap();
            log.append(&record).unwrap();
        }
        log.discard_unsynced().unwrap();
        assert_eq!(log.end(), LogPosition(1));
        assert_eq!(log.segment_count(), 1);
        append(&mut log, "after", 1);
        let seen = replay_all(&mut log, 0);
        let names: Vec<&str> = seen.iter().map(|(_, a)| a[0].as_str()).collect();
        assert_eq!(names, ["kept", "after"]);
    }

    #[test]
    fn segments_wholly_before_a_position_are_deleted_and_the_rest_replays() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), options(300)).unwrap();
        for i in 0..12 {
            append(&mut log, &format!("a{i}"), i);
        }
        let before = log.segment_count();
        let bytes = log.size_bytes();
        log.truncate_before(LogPosition(9)).unwrap();
        assert!(log.segment_count() < before);
        assert!(log.size_bytes() < bytes);
        assert!(log.segments[0].first <= 9);
        let seen = replay_all(&mut log, 9);
        assert_eq!(seen.first().unwrap().0, 10);
        assert_eq!(seen.len(), 3);
        // Everything up to the end can go, except the segment being written.
        log.truncate_before(log.end()).unwrap();
        assert_eq!(log.segment_count(), 1);
        assert_eq!(append(&mut log, "z", 99), LogPosition(13));
    }
}
