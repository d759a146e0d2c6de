//! Message content while it arrives: in memory up to a small threshold,
//! then in an unnamed file in the spool's spill directory. A client that is
//! slow (or hostile) to finish its DATA therefore holds disk, not memory;
//! the content is read back whole only once the final dot has arrived, for
//! the policy event, signing and the spool write, under the memory budget.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Content in memory before it goes to a spill file.
pub const SPILL_THRESHOLD: usize = 128 * 1024;
/// Input is decoded at most this much at a time, so the buffer never grows
/// past `SPILL_THRESHOLD` plus twice this (a bare LF may become CRLF).
pub const FEED_SLICE: usize = 32 * 1024;

pub struct Incoming {
    mem: Vec<u8>,
    file: Option<(tokio::fs::File, u64)>,
    dir: Option<Arc<PathBuf>>,
}

impl Incoming {
    /// `dir`: where spill files go (none: everything stays in memory).
    pub fn new(dir: Option<Arc<PathBuf>>, capacity: usize) -> Incoming {
        Incoming {
            mem: Vec::with_capacity(capacity),
            file: None,
            dir,
        }
    }

    /// Where the data receiver appends decoded content.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.mem
    }

    /// Memory held (what the budget must cover).
    pub fn memory(&self) -> usize {
        self.mem.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> u64 {
        self.file.as_ref().map_or(0, |(_, n)| *n) + self.mem.len() as u64
    }

    /// Drops everything held: the content is being discarded.
    pub fn discard(&mut self) {
        self.mem = Vec::new();
        self.file = None;
    }

    /// Moves the buffer to the spill file once it reaches the threshold.
    pub async fn spill_if_full(&mut self) -> std::io::Result<()> {
        if self.mem.len() < SPILL_THRESHOLD {
            return Ok(());
        }
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        if self.file.is_none() {
            self.file = Some((create_unnamed(dir).await?, 0));
        }
        if let Some((file, written)) = self.file.as_mut() {
            file.write_all(&self.mem).await?;
            *written += self.mem.len() as u64;
            self.mem.clear();
        }
        Ok(())
    }

    /// The whole content, read back from the spill file if there is one.
    pub async fn into_vec(self) -> std::io::Result<Vec<u8>> {
        let Some((mut file, written)) = self.file else {
            return Ok(self.mem);
        };
        let mut out = Vec::with_capacity(written as usize + self.mem.len());
        file.flush().await?;
        file.seek(SeekFrom::Start(0)).await?;
        (&mut file).take(written).read_to_end(&mut out).await?;
        if out.len() as u64 != written {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "spill file shorter than what was written to it",
            ));
        }
        out.extend_from_slice(&self.mem);
        Ok(out)
    }
}

/// A file with no name (O_TMPFILE where the filesystem has it), so nothing
/// is left behind by a crash.
async fn create_unnamed(dir: &Path) -> std::io::Result<tokio::fs::File> {
    let dir = dir.to_path_buf();
    let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
        .await
        .map_err(std::io::Error::other)??;
    Ok(tokio::fs::File::from_std(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn content_past_the_threshold_goes_to_disk_and_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Incoming::new(Some(Arc::new(dir.path().to_path_buf())), 1024);
        let mut expected = Vec::new();
        for i in 0..40u32 {
            let piece = vec![(i % 251) as u8; FEED_SLICE + i as usize];
            c.buffer().extend_from_slice(&piece);
            expected.extend_from_slice(&piece);
            c.spill_if_full().await.unwrap();
            assert!(c.buffer().len() < SPILL_THRESHOLD);
        }
        assert_eq!(c.len(), expected.len() as u64);
        // Nothing with a name was left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(c.into_vec().await.unwrap(), expected);

        // Without a directory everything stays in memory.
        let mut m = Incoming::new(None, 16);
        m.buffer().extend_from_slice(&vec![1; SPILL_THRESHOLD * 2]);
        m.spill_if_full().await.unwrap();
        assert_eq!(m.buffer().len(), SPILL_THRESHOLD * 2);
        assert_eq!(m.into_vec().await.unwrap().len(), SPILL_THRESHOLD * 2);
    }
}
