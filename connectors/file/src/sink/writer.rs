//! The blocking writer behind a `file-sink` task: one buffered, append-mode file per resolved
//! path, rolled by size or age, made durable by `flush`.
//!
//! Durability: `flush` writes out every buffer, fsyncs each file written since the last flush,
//! then fsyncs the directories that gained entries (new files, new directories). A rolled file
//! is fsynced before its rename and its directory after, so a roll never loses data.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::ops::Range;
use std::sync::Arc;

use logbrook_connect::{Error, Result};
use serde_json::Value;

use super::encode::Encoder;
use super::{FileSinkConfig, SinkFormat};

/// The write buffer of each open file.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// The longest csv header read back from an existing file.
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// All files of one sink task.
pub(super) struct SinkWriter {
    format: SinkFormat,
    csv_columns: Option<Vec<String>>,
    roll_bytes: Option<u64>,
    roll_after: Option<Duration>,
    encoder: Encoder,
    files: HashMap<PathBuf, ActiveFile>,
    /// Directories that gained entries since the last flush.
    dirs_to_sync: BTreeSet<PathBuf>,
    /// The first roll number worth trying, by path.
    next_roll: HashMap<PathBuf, u64>,
}

/// The file a resolved path is written to.
struct ActiveFile {
    /// `None` once closed for being idle; reopened by the next write.
    writer: Option<BufWriter<File>>,
    /// Its size, buffered bytes included.
    bytes: u64,
    /// When this task started writing it, for `roll_ms`.
    started: Instant,
    /// Whether it was written since the last flush.
    written: bool,
    /// Its csv columns, once known.
    columns: Option<Vec<String>>,
    /// The csv header still has to be written (the file is empty).
    header_pending: bool,
}

impl SinkWriter {
    pub(super) fn new(config: &FileSinkConfig) -> Self {
        Self {
            format: config.format,
            csv_columns: config.csv_columns.clone(),
            roll_bytes: config.roll_bytes,
            roll_after: config.roll_ms.map(Duration::from_millis),
            encoder: Encoder::new(config.format),
            files: HashMap::new(),
            dirs_to_sync: BTreeSet::new(),
            next_roll: HashMap::new(),
        }
    }

    /// Writes each record of `batch` to its file, in order.
    ///
    /// # Errors
    /// I/O errors naming the file. The records that cannot be written in the format are
    /// returned, by index, with why.
    pub(super) fn write(&mut self, batch: Batch) -> Result<Vec<(usize, String)>> {
        let mut rejected = Vec::new();
        for item in batch.items {
            let encoded = match &item.data {
                ItemData::Encoded(range) => Some(&batch.buffer[range.clone()]),
                ItemData::Value(_) => None,
            };
            let value = match &item.data {
                ItemData::Value(value) => Some(value),
                ItemData::Encoded(_) => None,
            };
            if let Err(why) = self.write_one(&item.path, encoded, value)? {
                rejected.push((item.index, why));
            }
        }
        Ok(rejected)
    }

    /// Makes everything written durable, then rolls files past `roll_ms` and closes files that
    /// were not written since the previous flush.
    ///
    /// # Errors
    /// I/O errors naming the file or directory.
    pub(super) fn flush(&mut self) -> Result<()> {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut idle = Vec::new();
        for (path, file) in &mut self.files {
            if file.written {
                if let Some(writer) = &mut file.writer {
                    writer.flush().map_err(|e| Error::io(path, e))?;
                    writer
                        .get_ref()
                        .sync_data()
                        .map_err(|e| Error::io(path, e))?;
                }
            } else {
                idle.push(path.clone());
            }
            file.written = false;
            if self
                .roll_after
                .is_some_and(|age| now.duration_since(file.started) >= age)
            {
                due.push(path.clone());
            }
        }
        for dir in std::mem::take(&mut self.dirs_to_sync) {
            sync_dir(&dir)?;
        }
        for path in &due {
            self.roll(path)?;
        }
        for path in idle {
            if self.roll_after.is_none() {
                self.files.remove(&path);
            } else if let Some(file) = self.files.get_mut(&path) {
                // Kept (closed) so that its age still counts for `roll_ms`.
                file.writer = None;
            }
        }
        Ok(())
    }

    /// Flushes and closes every file.
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub(super) fn close(&mut self) -> Result<()> {
        self.flush()?;
        self.files.clear();
        Ok(())
    }

    /// Writes one record to the file at `path`, already `encoded` or as a `value` to encode
    /// with the file's csv columns; rolls the file if it is due.
    ///
    /// # Errors
    /// I/O errors; the inner error is why the record cannot be written in this format.
    fn write_one(
        &mut self,
        path: &Path,
        encoded: Option<&[u8]>,
        value: Option<&Value>,
    ) -> Result<Result<(), String>> {
        let file = active_file(
            &mut self.files,
            &mut self.dirs_to_sync,
            path,
            self.format,
            self.csv_columns.as_ref(),
        )?;
        let line = match encoded {
            Some(line) => line,
            None => {
                if file.columns.is_none() {
                    match Encoder::columns_of(value) {
                        Ok(columns) => file.columns = Some(columns),
                        Err(why) => return Ok(Err(why)),
                    }
                }
                let columns = file.columns.as_deref().unwrap_or_default();
                match self.encoder.encode(value, columns, file.header_pending) {
                    Ok(line) => line,
                    Err(why) => return Ok(Err(why)),
                }
            }
        };
        let Some(writer) = file.writer.as_mut() else {
            return Err(Error::fatal(format!(
                "{}: file is not open",
                path.display()
            )));
        };
        writer.write_all(line).map_err(|e| Error::io(path, e))?;
        file.bytes += line.len() as u64;
        file.written = true;
        file.header_pending = false;
        let due = self.roll_bytes.is_some_and(|limit| file.bytes >= limit)
            || self
                .roll_after
                .is_some_and(|age| file.started.elapsed() >= age);
        if due {
            self.roll(path)?;
        }
        Ok(Ok(()))
    }

    /// Closes, fsyncs and renames the file at `path` to `<path>.<N>`.
    fn roll(&mut self, path: &Path) -> Result<()> {
        let Some(mut file) = self.files.remove(path) else {
            return Ok(());
        };
        if let Some(writer) = file.writer.take() {
            let handle = writer
                .into_inner()
                .map_err(|e| Error::io(path, e.into_error()))?;
            handle.sync_all().map_err(|e| Error::io(path, e))?;
        }
        let target = self.free_roll_name(path)?;
        match fs::rename(path, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "file to roll is gone; starting a new one");
                return Ok(());
            }
            Err(e) => return Err(Error::io(path, e)),
        }
        sync_dir(&parent_of(path))?;
        tracing::debug!(
            path = %path.display(),
            rolled_to = %target.display(),
            bytes = file.bytes,
            "rolled file"
        );
        Ok(())
    }

    /// `<path>.<N>` for the first `N` from 1 that names nothing.
    fn free_roll_name(&mut self, path: &Path) -> Result<PathBuf> {
        let mut number = self.next_roll.get(path).copied().unwrap_or(1);
        loop {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{number}"));
            let candidate = PathBuf::from(name);
            match fs::symlink_metadata(&candidate) {
                Ok(_) => number += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    self.next_roll.insert(path.to_path_buf(), number + 1);
                    return Ok(candidate);
                }
                Err(e) => return Err(Error::io(candidate, e)),
            }
        }
    }
}

/// The open file for `path`, opening (and creating) it if needed.
fn active_file<'a>(
    files: &'a mut HashMap<PathBuf, ActiveFile>,
    dirs_to_sync: &mut BTreeSet<PathBuf>,
    path: &Path,
    format: SinkFormat,
    csv_columns: Option<&Vec<String>>,
) -> Result<&'a mut ActiveFile> {
    let open = files.get(path).is_some_and(|file| file.writer.is_some());
    if !open {
        let (handle, created, size) = open_append(path, dirs_to_sync)?;
        let csv = format == SinkFormat::Csv;
        let writer = Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, handle));
        match files.get_mut(path) {
            Some(file) => {
                file.writer = writer;
                file.bytes = size;
                file.header_pending = csv && size == 0;
            }
            None => {
                let columns = match csv_columns {
                    Some(columns) => Some(columns.clone()),
                    None if csv && size > 0 => read_header(path)?,
                    None => None,
                };
                tracing::debug!(path = %path.display(), created, size, "opened file");
                files.insert(
                    path.to_path_buf(),
                    ActiveFile {
                        writer,
                        bytes: size,
                        started: Instant::now(),
                        written: false,
                        columns,
                        header_pending: csv && size == 0,
                    },
                );
            }
        }
    }
    files
        .get_mut(path)
        .ok_or_else(|| Error::fatal(format!("{}: file vanished from the sink", path.display())))
}

/// Opens `path` for appending, creating it and its directories: the file, whether it was
/// created, and its size.
fn open_append(path: &Path, dirs_to_sync: &mut BTreeSet<PathBuf>) -> Result<(File, bool, u64)> {
    let parent = parent_of(path);
    create_dirs(&parent, dirs_to_sync)?;
    match OpenOptions::new().append(true).create_new(true).open(path) {
        Ok(file) => {
            dirs_to_sync.insert(parent);
            Ok((file, true, 0))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
            Ok((file, false, size))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Creates `dir` and its missing ancestors, noting the directories that gained entries.
fn create_dirs(dir: &Path, dirs_to_sync: &mut BTreeSet<PathBuf>) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = dir.to_path_buf();
    while !at.exists() {
        let parent = parent_of(&at);
        missing.push(at);
        if parent == Path::new(".") || parent == Path::new("/") {
            break;
        }
        at = parent;
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    dirs_to_sync.extend(missing.iter().map(|created| parent_of(created)));
    Ok(())
}

/// The csv columns of an existing file's header row.
fn read_header(path: &Path) -> Result<Option<Vec<String>>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut line = Vec::new();
    BufReader::new(file.take(MAX_HEADER_BYTES))
        .read_until(b'\n', &mut line)
        .map_err(|e| Error::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_slice());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => Ok(Some(record.iter().map(str::to_owned).collect())),
        Ok(false) => Ok(None),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the csv header of the file; taking columns from the next record");
            Ok(None)
        }
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a directory's entries durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Records of one `put`, ready for the files: json and lines values already encoded into one
/// buffer, csv values kept whole (their columns depend on the file).
#[derive(Default)]
pub(super) struct Batch {
    buffer: Vec<u8>,
    items: Vec<Item>,
}

struct Item {
    /// Its index in the `put`.
    index: usize,
    path: Arc<Path>,
    data: ItemData,
}

enum ItemData {
    /// A line in [`Batch::buffer`].
    Encoded(Range<usize>),
    /// A csv value.
    Value(Value),
}

impl Batch {
    /// Adds an encoded line.
    pub(super) fn push_encoded(&mut self, index: usize, path: Arc<Path>, line: &[u8]) {
        let start = self.buffer.len();
        self.buffer.extend_from_slice(line);
        self.items.push(Item {
            index,
            path,
            data: ItemData::Encoded(start..self.buffer.len()),
        });
    }

    /// Adds a value to encode once its file is known.
    pub(super) fn push_value(&mut self, index: usize, path: Arc<Path>, value: Value) {
        self.items.push(Item {
            index,
            path,
            data: ItemData::Value(value),
        });
    }
}
