//! Memory a read takes, asked for before it is taken. A load gives its readers an account (the
//! service's reservation against `memory_limit`); each file's read takes from it the bytes it
//! fetches, the text it decompresses and keeps, and the batches it decodes, and fails naming the
//! limit as soon as one does not fit, so a file that expands beyond the limit (a gzip bomb, a
//! listing that claims a huge size) stops the load before the process is at risk. When the file is
//! done, [`FileMemory::keep`] leaves exactly what its data holds taken; whatever else it took
//! (its raw bytes, headroom) is given back.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{ConnectorError, Result};

/// Why bytes could not be taken: the limit and what was free of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRefused {
    pub needed: u64,
    pub available: u64,
    pub limit: u64,
}

/// An account reads take memory from.
pub trait ReadMemory: Send + Sync + std::fmt::Debug {
    /// Takes `bytes` more, or refuses (taking nothing) when they do not fit.
    fn take(&self, bytes: u64) -> std::result::Result<(), MemoryRefused>;
    /// Gives back `bytes` taken before.
    fn give_back(&self, bytes: u64);
}

/// What one file's read holds of its load's account; given back when dropped, except what
/// [`Self::keep`] left with the account.
#[derive(Debug)]
pub struct FileMemory {
    account: Arc<dyn ReadMemory>,
    file: String,
    taken: AtomicU64,
}

impl FileMemory {
    pub fn new(account: Arc<dyn ReadMemory>, file: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            account,
            file: file.into(),
            taken: AtomicU64::new(0),
        })
    }

    /// Takes `bytes` more for this file; the error names the file and the limit.
    pub fn take(&self, bytes: u64) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.account
            .take(bytes)
            .map_err(|r| self.refused(r.needed, r))?;
        self.taken.fetch_add(bytes, Ordering::SeqCst);
        Ok(())
    }

    pub fn give_back(&self, bytes: u64) {
        let bytes = bytes.min(self.taken.load(Ordering::SeqCst));
        self.taken.fetch_sub(bytes, Ordering::SeqCst);
        self.account.give_back(bytes);
    }

    /// Bytes this file holds now.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::SeqCst)
    }

    /// Leaves exactly `bytes` (what the file's loaded data holds) taken in the account, no longer
    /// this file's: takes what is missing, or gives back the rest.
    pub fn keep(&self, bytes: u64) -> Result<()> {
        let taken = self.taken();
        if bytes > taken {
            self.take(bytes - taken)?;
        } else {
            self.give_back(taken - bytes);
        }
        self.taken.fetch_sub(bytes, Ordering::SeqCst);
        Ok(())
    }

    fn refused(&self, needed: u64, r: MemoryRefused) -> ConnectorError {
        ConnectorError::MemoryLimit {
            file: self.file.clone(),
            held: self.taken(),
            needed,
            available: r.available,
            limit: r.limit,
        }
    }
}

impl Drop for FileMemory {
    fn drop(&mut self) {
        let taken = *self.taken.get_mut();
        if taken > 0 {
            self.account.give_back(taken);
        }
    }
}

/// Bytes read through a [`Charged`] reader are taken in steps of this size.
const CHARGE_STEP: u64 = 1 << 20;

/// A reader that takes memory for the bytes read through it (decompressed text, as it is
/// produced), before handing them on. The read fails with [`ConnectorError::MemoryLimit`] (inside
/// an `io::Error`; see [`from_io`]) once they do not fit. [`Self::release`] gives back what was
/// read so far, for readers that do not keep the text (CSV, once a batch is built from it).
pub(crate) struct Charged<R> {
    inner: R,
    memory: Arc<FileMemory>,
    /// Bytes read and not yet taken (less than a step).
    pending: u64,
    /// Bytes taken for what was read, not yet released.
    held: Arc<AtomicU64>,
}

impl<R> Charged<R> {
    pub(crate) fn new(inner: R, memory: Arc<FileMemory>) -> Self {
        Self {
            inner,
            memory,
            pending: 0,
            held: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A handle that gives back what has been read so far, for use while the reader is owned by
    /// a decoder.
    pub(crate) fn releaser(&self) -> Releaser {
        Releaser {
            memory: self.memory.clone(),
            held: self.held.clone(),
        }
    }
}

/// Gives back what a [`Charged`] reader has taken so far.
pub(crate) struct Releaser {
    memory: Arc<FileMemory>,
    held: Arc<AtomicU64>,
}

impl Releaser {
    pub(crate) fn release(&self) {
        self.memory.give_back(self.held.swap(0, Ordering::SeqCst));
    }
}

impl<R: Read> Read for Charged<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pending += n as u64;
        if self.pending >= CHARGE_STEP {
            self.memory
                .take(self.pending)
                .map_err(std::io::Error::other)?;
            self.held.fetch_add(self.pending, Ordering::SeqCst);
            self.pending = 0;
        }
        Ok(n)
    }
}

/// The memory error carried inside an `io::Error` by a [`Charged`] reader, if that is what it is.
pub(crate) fn from_io(e: &std::io::Error) -> Option<ConnectorError> {
    match e.get_ref()?.downcast_ref::<ConnectorError>()? {
        ConnectorError::MemoryLimit {
            file,
            held,
            needed,
            available,
            limit,
        } => Some(ConnectorError::MemoryLimit {
            file: file.clone(),
            held: *held,
            needed: *needed,
            available: *available,
            limit: *limit,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// An account with a limit, like the service's reservation.
    #[derive(Debug)]
    struct Account {
        limit: u64,
        used: Mutex<u64>,
    }

    impl ReadMemory for Account {
        fn take(&self, bytes: u64) -> std::result::Result<(), MemoryRefused> {
            let mut used = self.used.lock().unwrap();
            if *used + bytes > self.limit {
                return Err(MemoryRefused {
                    needed: bytes,
                    available: self.limit - *used,
                    limit: self.limit,
                });
            }
            *used += bytes;
            Ok(())
        }
        fn give_back(&self, bytes: u64) {
            *self.used.lock().unwrap() -= bytes;
        }
    }

    fn account(limit: u64) -> Arc<Account> {
        Arc::new(Account {
            limit,
            used: Mutex::new(0),
        })
    }

    #[test]
    fn a_file_keeps_what_its_data_holds_and_gives_back_the_rest() {
        let a = account(100);
        let f = FileMemory::new(a.clone(), "f.csv");
        f.take(60).unwrap();
        let e = f.take(50).unwrap_err().to_string();
        assert!(e.contains("f.csv") && e.contains("100"), "{e}");
        assert_eq!(*a.used.lock().unwrap(), 60);
        f.keep(30).unwrap();
        drop(f);
        assert_eq!(*a.used.lock().unwrap(), 30, "only the kept bytes stay");
        // Keeping more than was taken takes the difference (and may be refused).
        let g = FileMemory::new(a.clone(), "g.csv");
        assert!(g.keep(80).is_err());
        g.keep(70).unwrap();
        drop(g);
        assert_eq!(*a.used.lock().unwrap(), 100);
    }

    #[test]
    fn a_charged_reader_stops_at_the_limit_and_releases_what_it_read() {
        let a = account(3 * CHARGE_STEP);
        let f = FileMemory::new(a.clone(), "bomb.csv.gz");
        let endless = std::io::repeat(b'x');
        let mut r = Charged::new(endless, f.clone());
        let releaser = r.releaser();
        let mut buf = vec![0u8; 64 << 10];
        let mut read = 0u64;
        let e = loop {
            match r.read(&mut buf) {
                Ok(n) => read += n as u64,
                Err(e) => break e,
            }
        };
        assert!(read <= 4 * CHARGE_STEP, "read {read} bytes past the limit");
        let e = from_io(&e).expect("a memory error").to_string();
        assert!(
            e.contains("bomb.csv.gz") && e.contains("memory_limit"),
            "{e}"
        );
        releaser.release();
        assert_eq!(*a.used.lock().unwrap(), 0);
    }
}
