//! The file I/O seam. Segment and index data goes through [`Storage`] so tests can swap in a
//! backend that fails or tears writes at a chosen byte, and check recovery without luck.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// One open file.
#[allow(clippy::len_without_is_empty)] // a file's length, not a collection's
pub trait StorageFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes written data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Sets the file length.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves disk blocks for `[0, len)` so later writes and syncs do not allocate.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;

    /// Reads exactly `buf.len()` bytes at `offset`, failing at end of file.
    fn read_exact_at(&self, buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
            offset += n as u64;
        }
        Ok(())
    }
}

/// Opens files.
pub trait Storage: Send + Sync + Debug {
    /// Opens `path` for reading and writing, creating it when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Opens `path` for reading only.
    fn open_read_only(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

impl Storage for FsStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .open(path)?;
        Ok(Arc::new(FsFile(file)))
    }

    fn open_read_only(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(FsFile(File::open(path)?)))
    }
}

#[derive(Debug)]
struct FsFile(File);

impl StorageFile for FsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        match rustix::fs::fallocate(&self.0, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            // Some file systems (tmpfs on old kernels) lack fallocate; writes still work.
            Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// Fsyncs a directory so renames and creations inside it are durable.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
pub(crate) mod faulty {
    //! A storage that tears the write that crosses a byte budget, then fails every call.
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[derive(Debug)]
    pub(crate) struct FaultyStorage {
        /// Bytes that may still be written before the crash; shared by all files.
        pub(crate) budget: Arc<AtomicI64>,
        /// When set, every fsync fails (as with EIO from a dying disk).
        pub(crate) fail_sync: Arc<std::sync::atomic::AtomicBool>,
    }

    #[derive(Debug)]
    struct FaultyFile {
        inner: Arc<dyn StorageFile>,
        budget: Arc<AtomicI64>,
        fail_sync: Arc<std::sync::atomic::AtomicBool>,
    }

    fn crashed() -> io::Error {
        io::Error::other("injected crash")
    }

    impl Storage for FaultyStorage {
        fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
            let inner = FsStorage.open(path, create)?;
            Ok(Arc::new(FaultyFile {
                inner,
                budget: self.budget.clone(),
                fail_sync: self.fail_sync.clone(),
            }))
        }
        fn open_read_only(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
            FsStorage.open_read_only(path)
        }
    }

    impl StorageFile for FaultyFile {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.inner.read_at(buf, offset)
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            let before = self.budget.fetch_sub(buf.len() as i64, Ordering::SeqCst);
            if before >= buf.len() as i64 {
                return self.inner.write_all_at(buf, offset);
            }
            if before > 0 {
                // The torn prefix reaches the disk, the rest does not.
                self.inner.write_all_at(&buf[..before as usize], offset)?;
            }
            Err(crashed())
        }
        fn sync_data(&self) -> io::Result<()> {
            if self.budget.load(Ordering::SeqCst) < 0 || self.fail_sync.load(Ordering::SeqCst) {
                Err(crashed())
            } else {
                self.inner.sync_data()
            }
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            if self.budget.load(Ordering::SeqCst) < 0 {
                Err(crashed())
            } else {
                self.inner.set_len(len)
            }
        }
        fn allocate(&self, len: u64) -> io::Result<()> {
            self.inner.allocate(len)
        }
        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }
    }
}
