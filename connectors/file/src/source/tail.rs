//! The blocking reader behind a `file-source` task: expands the glob, reads the files it owns
//! with positional reads into one large buffer, splits complete lines into records, and follows
//! appends, rotation, truncation and deletion.
//!
//! Invariant: for each file, `position` is the byte offset just after the last complete line
//! consumed (the source offset of its record) and `partial` holds the bytes read after it, whose
//! newline has not arrived yet. The next read starts at `position + partial.len()`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use logbrook_connect::{Error, Record, Result, SourceContext, SourceRecord};
use serde_json::{Value, json};

use super::decode::{Decoded, csv_fields, decode};
use super::{FileSourceConfig, SourceFormat, StartPosition};

/// The read buffer shared by all files of a task: large, so a busy file is read in few calls.
const READ_BUFFER_BYTES: usize = 1 << 20;
/// The glob is expanded again at most this often (or every `poll_interval_ms`, if longer).
const MIN_SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// How long a missing path is given to reappear (a rotation's new file) before its file is
/// dropped.
const MISSING_GRACE: Duration = Duration::from_secs(1);

/// The regular files a glob matches now, in the glob's (sorted) order.
///
/// # Errors
/// Fatal when the pattern is not a glob. Unreadable directories are logged and skipped.
pub(super) fn expand(pattern: &str) -> Result<Vec<PathBuf>> {
    // A directory (ending in `/`, or one that exists) means every file in it.
    let directory = pattern.trim_end_matches(std::path::MAIN_SEPARATOR);
    let pattern = if pattern.ends_with(std::path::MAIN_SEPARATOR) || Path::new(pattern).is_dir() {
        format!("{}/*", glob::Pattern::escape(directory))
    } else {
        pattern.to_string()
    };
    // Hidden files (`.app.log.swp`) are not meant to be read, in a directory or by a `*`.
    let options = glob::MatchOptions {
        require_literal_leading_dot: true,
        ..glob::MatchOptions::new()
    };
    let paths = glob::glob_with(&pattern, options)
        .map_err(|e| Error::fatal(format!("path {pattern:?} is not a valid glob: {e}")))?;
    let mut files = Vec::new();
    for entry in paths {
        match entry {
            Ok(path) if path.is_file() => files.push(path),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                path = %e.path().display(),
                error = %e.error(),
                "cannot read a directory the glob covers; skipping it"
            ),
        }
    }
    Ok(files)
}

/// What every file of a task needs to know to make records.
struct Settings {
    topic: String,
    format: SourceFormat,
    follow: bool,
    /// The most records one read returns.
    limit: usize,
}

/// All files of one task.
pub(super) struct Tailer {
    config: FileSourceConfig,
    context: SourceContext,
    settings: Settings,
    files: Vec<TailedFile>,
    /// Paths in `files`.
    tailing: HashSet<String>,
    /// Paths opened during this run. A path that comes back after its file was dropped names a
    /// new file, read from its start whatever offset was stored when the task opened.
    opened: HashSet<String>,
    buffer: Vec<u8>,
    scanned: bool,
    next_scan: Instant,
    scan_interval: Duration,
    /// The file the next read starts with, so that a busy file cannot starve the others.
    next_file: usize,
    /// An error met after some records were read; returned by the next read.
    deferred: Option<Error>,
}

impl Tailer {
    pub(super) fn new(config: FileSourceConfig, context: SourceContext) -> Self {
        let settings = Settings {
            topic: context.topic.clone(),
            format: config.format,
            follow: config.follow,
            limit: config.batch_max_records.max(1),
        };
        let scan_interval = Duration::from_millis(config.poll_interval_ms).max(MIN_SCAN_INTERVAL);
        Self {
            config,
            context,
            settings,
            files: Vec::new(),
            tailing: HashSet::new(),
            opened: HashSet::new(),
            buffer: vec![0; READ_BUFFER_BYTES],
            scanned: false,
            next_scan: Instant::now(),
            scan_interval,
            next_file: 0,
            deferred: None,
        }
    }

    /// Reads up to `batch_max_records` records from the files, starting with a different file
    /// each time. Returns nothing when no file has a new complete line.
    ///
    /// # Errors
    /// I/O errors naming the file. An error met after some records were read is returned by the
    /// next call instead, so those records (and their offsets) are not lost.
    pub(super) fn read_batch(&mut self) -> Result<Vec<SourceRecord>> {
        if let Some(error) = self.deferred.take() {
            return Err(error);
        }
        if !self.scanned {
            self.scan(true)?;
            self.scanned = true;
            self.next_scan = Instant::now() + self.scan_interval;
        } else if self.settings.follow && Instant::now() >= self.next_scan {
            self.scan(false)?;
            self.next_scan = Instant::now() + self.scan_interval;
        }

        let mut out = Vec::new();
        let count = self.files.len();
        let mut gone = Vec::new();
        for step in 0..count {
            let index = (self.next_file + step) % count;
            match self.files[index].read(&mut self.buffer, &self.settings, &mut out) {
                Ok(FileState::Open) => {}
                Ok(FileState::Gone) => gone.push(index),
                Err(error) if out.is_empty() => return Err(error),
                Err(error) => {
                    self.deferred = Some(error);
                    break;
                }
            }
            if out.len() >= self.settings.limit {
                break;
            }
        }
        gone.sort_unstable();
        for index in gone.into_iter().rev() {
            let file = self.files.remove(index);
            self.tailing.remove(&file.cursor.name);
        }
        self.next_file = (self.next_file + 1) % self.files.len().max(1);
        Ok(out)
    }

    /// Opens the files of this task's share that the glob matches and that are not read yet.
    fn scan(&mut self, initial: bool) -> Result<()> {
        let paths = expand(&self.config.path)?;
        if initial && paths.is_empty() {
            tracing::info!(path = %self.config.path, "no file matches the path yet; waiting for one");
        }
        for path in paths {
            let name = path.to_string_lossy().into_owned();
            if self.tailing.contains(&name) || !self.config.owns(&name) {
                continue;
            }
            if let Some(file) = self.open_file(path, name.clone(), initial)? {
                tracing::info!(path = %name, position = file.cursor.position, "reading file");
                self.tailing.insert(name);
                self.files.push(file);
            }
        }
        Ok(())
    }

    /// Opens a matched file where this task should start it: at its stored offset if that still
    /// describes it, else at `start` (files present when the task opened) or at 0.
    fn open_file(
        &mut self,
        path: PathBuf,
        name: String,
        initial: bool,
    ) -> Result<Option<TailedFile>> {
        let Some((file, inode, size)) = open_regular(&path)? else {
            return Ok(None);
        };
        let mut cursor = LineCursor::new(name, inode);
        let first_time = self.opened.insert(cursor.name.clone());
        let stored = if first_time {
            self.context.offset(&cursor.partition).cloned()
        } else {
            None
        };
        match stored {
            Some(offset) => match stored_position(&offset) {
                Some((position, stored_inode)) if stored_inode == inode && position <= size => {
                    tracing::debug!(path = %cursor.name, position, "resuming file at its stored offset");
                    cursor.resume_at(position);
                }
                Some((position, stored_inode)) => tracing::warn!(
                    path = %cursor.name,
                    position,
                    stored_inode,
                    inode,
                    size,
                    "file was rotated or truncated since its stored offset; reading it from its start"
                ),
                None => tracing::warn!(
                    path = %cursor.name,
                    offset = %offset,
                    "stored offset is not understood; reading the file from its start"
                ),
            },
            None if initial && first_time && self.config.start == StartPosition::End => {
                cursor.resume_at(size);
                // Inside a line that is still being written: skip to its end.
                cursor.skip_to_newline =
                    size > 0 && last_byte(&file, size).map_err(|e| Error::io(&path, e))? != b'\n';
            }
            None => {}
        }
        if self.settings.format == SourceFormat::Csv && cursor.position > 0 {
            let header = first_line(&file, cursor.position).map_err(|e| Error::io(&path, e))?;
            match header.map(|line| csv_fields(line.strip_suffix(b"\r").unwrap_or(&line))) {
                Some(Ok(fields)) => cursor.header = Some(fields),
                Some(Err(why)) => {
                    tracing::warn!(path = %cursor.name, reason = %why, "cannot read the csv header; reading the file from its start");
                    cursor.reset(inode);
                }
                None => {
                    tracing::warn!(path = %cursor.name, "the csv header is incomplete; reading the file from its start");
                    cursor.reset(inode);
                }
            }
        }
        Ok(Some(TailedFile {
            path,
            file,
            cursor,
            rotation_seen: false,
            missing_since: None,
        }))
    }
}

/// Opens `path` if it is still a regular file: the handle, its inode and its size.
fn open_regular(path: &PathBuf) -> Result<Option<(File, u64, u64)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Ok(None);
    }
    Ok(Some((file, meta.ino(), meta.len())))
}

/// `(position, inode)` of a stored source offset.
fn stored_position(offset: &Value) -> Option<(u64, u64)> {
    Some((
        offset.get("position")?.as_u64()?,
        offset.get("inode")?.as_u64()?,
    ))
}

fn last_byte(file: &File, size: u64) -> io::Result<u8> {
    let mut byte = [0];
    file.read_exact_at(&mut byte, size - 1)?;
    Ok(byte[0])
}

/// The first line of `file` (without its `\n`) if it ends before `limit`.
fn first_line(file: &File, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    while (line.len() as u64) < limit {
        let read = match file.read_at(&mut chunk, line.len() as u64) {
            Ok(0) => return Ok(None),
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(newline) = chunk[..read].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&chunk[..newline]);
            return Ok(((line.len() as u64) < limit).then_some(line));
        }
        line.extend_from_slice(&chunk[..read]);
    }
    Ok(None)
}

/// Whether a file is still read after a read.
enum FileState {
    Open,
    /// Read to its end and no longer followed, or deleted: drop it.
    Gone,
}

/// What to do at the end of a file's data.
enum AtEnd {
    /// Nothing new: wait for the next read.
    Wait,
    /// Read again (truncated, rotated, or draining before a switch).
    ReadAgain,
    /// Drop the file.
    Gone,
}

/// One file being read.
struct TailedFile {
    path: PathBuf,
    file: File,
    cursor: LineCursor,
    /// A new file was found at the path; the old handle is drained once more before switching.
    rotation_seen: bool,
    /// Since when the path names no file.
    missing_since: Option<Instant>,
}

impl TailedFile {
    /// Reads complete lines into `out` until it holds `settings.limit` records or the file has
    /// no more data.
    fn read(
        &mut self,
        buffer: &mut [u8],
        settings: &Settings,
        out: &mut Vec<SourceRecord>,
    ) -> Result<FileState> {
        loop {
            if out.len() >= settings.limit {
                return Ok(FileState::Open);
            }
            let read = match self.file.read_at(buffer, self.cursor.read_position()) {
                Ok(read) => read,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&self.path, e)),
            };
            if read == 0 {
                match self.at_end(settings, out)? {
                    AtEnd::Wait => return Ok(FileState::Open),
                    AtEnd::ReadAgain => continue,
                    AtEnd::Gone => return Ok(FileState::Gone),
                }
            }
            self.cursor.take_lines(&buffer[..read], settings, out);
        }
    }

    /// At the end of the open handle's data: checks what the path names now.
    fn at_end(&mut self, settings: &Settings, out: &mut Vec<SourceRecord>) -> Result<AtEnd> {
        if !settings.follow {
            // Not following: the file is taken as complete, its last line included.
            self.cursor.finish_partial(settings, out);
            tracing::debug!(path = %self.cursor.name, position = self.cursor.position, "file read to its end");
            return Ok(AtEnd::Gone);
        }
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.ino() == self.cursor.inode => {
                self.missing_since = None;
                self.rotation_seen = false;
                if meta.len() < self.cursor.read_position() {
                    tracing::warn!(
                        path = %self.cursor.name,
                        size = meta.len(),
                        position = self.cursor.read_position(),
                        "file was truncated; reading it again from its start"
                    );
                    self.cursor.reset(self.cursor.inode);
                    return Ok(AtEnd::ReadAgain);
                }
                Ok(AtEnd::Wait)
            }
            Ok(_) => {
                self.missing_since = None;
                if !self.rotation_seen {
                    // The writer may have appended to the old file just before it was renamed.
                    self.rotation_seen = true;
                    return Ok(AtEnd::ReadAgain);
                }
                let Some((file, inode, _)) = open_regular(&self.path)? else {
                    return Ok(AtEnd::Wait);
                };
                // The old file is complete: its last line counts even without a newline.
                self.cursor.finish_partial(settings, out);
                tracing::info!(
                    path = %self.cursor.name,
                    old_inode = self.cursor.inode,
                    inode,
                    "file was rotated; reading the new one from its start"
                );
                self.file = file;
                self.cursor.reset(inode);
                self.rotation_seen = false;
                Ok(AtEnd::ReadAgain)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let since = *self.missing_since.get_or_insert_with(Instant::now);
                if since.elapsed() < MISSING_GRACE {
                    return Ok(AtEnd::Wait);
                }
                self.cursor.finish_partial(settings, out);
                tracing::info!(path = %self.cursor.name, "file is gone; no longer reading it");
                Ok(AtEnd::Gone)
            }
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }
}

/// Where a file is read, and the lines split so far.
struct LineCursor {
    /// The path as matched.
    name: String,
    /// `{"path": name}`.
    partition: Value,
    inode: u64,
    /// The offset just after the last complete line consumed.
    position: u64,
    /// Bytes after `position` whose newline has not arrived yet.
    partial: Vec<u8>,
    /// The number of the next line, from 1, when the file was read from its start.
    line: Option<u64>,
    /// The csv header, once read.
    header: Option<Vec<String>>,
    /// Drop the line under way (its start was before where reading began).
    skip_to_newline: bool,
}

impl LineCursor {
    fn new(name: String, inode: u64) -> Self {
        Self {
            partition: json!({ "path": name }),
            name,
            inode,
            position: 0,
            partial: Vec::new(),
            line: Some(1),
            header: None,
            skip_to_newline: false,
        }
    }

    /// Back to the start of the file with this inode.
    fn reset(&mut self, inode: u64) {
        self.inode = inode;
        self.position = 0;
        self.partial.clear();
        self.line = Some(1);
        self.header = None;
        self.skip_to_newline = false;
    }

    /// Continues at `position`, where line numbers are unknown.
    fn resume_at(&mut self, position: u64) {
        self.position = position;
        self.line = (position == 0).then_some(1);
    }

    /// Where the next read starts.
    fn read_position(&self) -> u64 {
        self.position + self.partial.len() as u64
    }

    /// Consumes `chunk`, read at [`read_position`](Self::read_position): emits its complete
    /// lines until `out` holds `settings.limit` records and keeps a trailing partial line.
    /// Bytes after the limit is reached are not consumed; they are read again next time.
    fn take_lines(&mut self, chunk: &[u8], settings: &Settings, out: &mut Vec<SourceRecord>) {
        let mut consumed = 0;
        while out.len() < settings.limit && consumed < chunk.len() {
            let rest = &chunk[consumed..];
            let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                self.partial.extend_from_slice(rest);
                return;
            };
            let end = self.read_position() + newline as u64 + 1;
            if self.partial.is_empty() {
                self.finish_line(&rest[..newline], end, settings, out);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&rest[..newline]);
                self.finish_line(&line, end, settings, out);
                line.clear();
                self.partial = line;
            }
            consumed += newline + 1;
        }
    }

    /// Emits the partial line as a complete one: the file will get no more data.
    fn finish_partial(&mut self, settings: &Settings, out: &mut Vec<SourceRecord>) {
        if self.partial.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.partial);
        let end = self.position + line.len() as u64;
        self.finish_line(&line, end, settings, out);
    }

    /// Handles one line, which ends (newline included) at byte `end`.
    fn finish_line(
        &mut self,
        line: &[u8],
        end: u64,
        settings: &Settings,
        out: &mut Vec<SourceRecord>,
    ) {
        let start = self.position;
        self.position = end;
        let number = self.line;
        if let Some(next) = &mut self.line {
            *next += 1;
        }
        if std::mem::take(&mut self.skip_to_newline) {
            return;
        }
        match decode(settings.format, line, &mut self.header) {
            Decoded::Skip => {}
            Decoded::Value(value, schema) => out.push(self.record(value, schema, None, settings)),
            Decoded::Bad(raw, why) => {
                let at = match number {
                    Some(number) => format!("{}:{number}", self.name),
                    None => format!("{}:byte {start}", self.name),
                };
                let error = Some(format!("{at}: {why}"));
                out.push(self.record(Value::String(raw), None, error, settings));
            }
        }
    }

    /// A record read just before `self.position`.
    fn record(
        &self,
        value: Value,
        value_schema: Option<arrow_schema::DataType>,
        error: Option<String>,
        settings: &Settings,
    ) -> SourceRecord {
        SourceRecord {
            record: Record {
                topic: settings.topic.clone(),
                value: Some(value),
                value_schema,
                ..Record::default()
            },
            source_partition: self.partition.clone(),
            source_offset: json!({ "position": self.position, "inode": self.inode }),
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(limit: usize) -> Settings {
        Settings {
            topic: "t".to_string(),
            format: SourceFormat::Lines,
            follow: true,
            limit,
        }
    }

    fn values(records: &[SourceRecord]) -> Vec<Value> {
        records
            .iter()
            .filter_map(|r| r.record.value.clone())
            .collect()
    }

    #[test]
    fn lines_split_across_chunks_are_joined_and_offsets_follow_each_newline() {
        let mut cursor = LineCursor::new("f".to_string(), 7);
        let mut out = Vec::new();
        cursor.take_lines(b"ab\ncd", &settings(10), &mut out);
        assert_eq!(values(&out), [json!("ab")]);
        assert_eq!(cursor.read_position(), 5);
        cursor.take_lines(b"e\n", &settings(10), &mut out);
        assert_eq!(values(&out), [json!("ab"), json!("cde")]);
        assert_eq!(out[1].source_offset, json!({"position": 7, "inode": 7}));
    }

    #[test]
    fn reading_stops_at_the_limit_without_consuming_the_rest() {
        let mut cursor = LineCursor::new("f".to_string(), 1);
        let mut out = Vec::new();
        cursor.take_lines(b"a\nb\nc\n", &settings(2), &mut out);
        assert_eq!(values(&out), [json!("a"), json!("b")]);
        assert_eq!(cursor.read_position(), 4);
    }

    #[test]
    fn skipping_to_a_newline_drops_the_line_under_way() {
        let mut cursor = LineCursor::new("f".to_string(), 1);
        cursor.resume_at(10);
        cursor.skip_to_newline = true;
        let mut out = Vec::new();
        cursor.take_lines(b"tail\nnext\n", &settings(10), &mut out);
        assert_eq!(values(&out), [json!("next")]);
        assert_eq!(out[0].source_offset["position"], json!(20));
    }

    #[test]
    fn first_line_is_found_only_before_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, "id,name\n1,a\n").unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(first_line(&file, 12).unwrap(), Some(b"id,name".to_vec()));
        assert_eq!(first_line(&file, 7).unwrap(), None);
    }
}
