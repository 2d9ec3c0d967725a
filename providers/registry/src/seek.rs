//! Random access into a bundle archive, so that a pass over its `tar`
//! skips the entries it does not want instead of decoding them.
//!
//! * A plain `.tar` is a file: skipping is a seek.
//! * A `.tar.xz` ends with an index of its blocks (compressed offset and
//!   uncompressed size of each). `xz -T0` (and any multi-threaded xz
//!   encoder) writes one block every few MiB, so [`XzSeekReader`] can start
//!   decoding at the block that holds a position instead of decoding
//!   everything before it. Each restart decodes a well-formed xz stream:
//!   the file's own stream header, the blocks from that one on, and an
//!   index and footer written for exactly those blocks, so liblzma checks
//!   every block (its header, its sizes and, when asked, its CRC) as it
//!   does in one pass. A file without a readable index (a truncated one,
//!   say) is read as a stream, as before, and fails there with the usual
//!   error.
//! * Other compressions (`.gz`, `.zst`, a single-block `.xz`) have no such
//!   index: skipping decodes and discards ([`Forward`]).
//!
//! Every reader counts the bytes it decoded (or read, for a plain tar) into
//! a counter shared by every reader of the same bundle file
//! ([`crate::bundle::decoded_bytes`]), which shows how often an archive was
//! decoded.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const STREAM_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0x00];
const FOOTER_MAGIC: [u8; 2] = *b"YZ";
/// Buffer between the file and the xz decoder (as in a one-pass read).
const INPUT_BUFFER: usize = 256 * 1024;
/// Decoding and discarding up to this many bytes more than a restart at
/// the target's block would is preferred to the restart (a new decoder
/// allocates its dictionary and input buffer).
const RESTART_COST: u64 = 256 * 1024;

/// A byte counter shared by every reader of one bundle file.
pub(crate) type Counter = Arc<AtomicU64>;

/// `Read + Seek`, boxed.
pub(crate) trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// One xz stream of the file.
#[derive(Debug)]
struct XzStream {
    /// The stream header, as in the file.
    header: [u8; 12],
    /// Its stream flags (the check type).
    flags: [u8; 2],
    /// Where its index starts in the file (the end of its blocks).
    index_offset: u64,
    /// Its blocks: a range of [`XzIndex::blocks`].
    first_block: usize,
    end_block: usize,
}

/// One block: where it is in the file and what it decodes to.
#[derive(Debug, Clone, Copy)]
struct XzBlock {
    stream: usize,
    /// Offset of the block header in the file.
    offset: u64,
    /// Block header + compressed data + check (the index's "unpadded size").
    unpadded: u64,
    /// Offset of its first decoded byte in the whole archive.
    start: u64,
    /// Bytes it decodes to.
    size: u64,
}

/// The block index of an `.xz` file (every stream, in file order).
#[derive(Debug)]
pub(crate) struct XzIndex {
    streams: Vec<XzStream>,
    blocks: Vec<XzBlock>,
    /// Decoded size of the whole file.
    total: u64,
}

fn round4(n: u64) -> u64 {
    n.div_ceil(4) * 4
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("xz index: {what}"))
}

/// An xz multibyte integer at `buf[*pos..]`.
fn varint(buf: &[u8], pos: &mut usize) -> io::Result<u64> {
    let mut value = 0u64;
    for i in 0..9 {
        let byte = *buf.get(*pos).ok_or_else(|| bad("record cut short"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(bad("integer too long"))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// A block as the index gives it: (file offset, unpadded size, decoded size).
type FoundBlock = (u64, u64, u64);

impl XzIndex {
    /// Reads the index of every stream of `file`, from its end. An error
    /// when the file does not end like a complete xz file.
    pub(crate) fn read(file: &File) -> io::Result<XzIndex> {
        let mut end = file.metadata()?.len();
        // streams from the last to the first, each with its blocks
        let mut found: Vec<(XzStream, Vec<FoundBlock>)> = Vec::new();
        while end > 0 {
            // stream padding: zero bytes, a multiple of four
            if end % 4 != 0 {
                return Err(bad("the file size is not a multiple of four"));
            }
            let word = read_at(file, end - 4, 4)?;
            if word == [0, 0, 0, 0] {
                end -= 4;
                continue;
            }
            if end < 24 {
                return Err(bad("too short for a stream"));
            }
            let footer = read_at(file, end - 12, 12)?;
            if footer[10..12] != FOOTER_MAGIC {
                return Err(bad("no stream footer at the end"));
            }
            if u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]])
                != crc32fast::hash(&footer[4..10])
            {
                return Err(bad("stream footer CRC mismatch"));
            }
            let backward = (u64::from(u32::from_le_bytes([
                footer[4], footer[5], footer[6], footer[7],
            ])) + 1)
                * 4;
            let flags = [footer[8], footer[9]];
            let index_offset = (end - 12)
                .checked_sub(backward)
                .ok_or_else(|| bad("index larger than the file"))?;
            let index = read_at(file, index_offset, backward as usize)?;
            let records = parse_index(&index)?;
            let blocks_len: u64 = records.iter().map(|(u, _)| round4(*u)).sum();
            let start = index_offset
                .checked_sub(blocks_len + 12)
                .ok_or_else(|| bad("blocks larger than the file"))?;
            let header = read_at(file, start, 12)?;
            if header[..6] != STREAM_MAGIC
                || header[6..8] != flags
                || u32::from_le_bytes([header[8], header[9], header[10], header[11]])
                    != crc32fast::hash(&header[6..8])
            {
                return Err(bad("stream header does not match its footer"));
            }
            let mut offset = start + 12;
            let mut blocks = Vec::with_capacity(records.len());
            for (unpadded, size) in records {
                blocks.push((offset, unpadded, size));
                offset += round4(unpadded);
            }
            let mut h = [0u8; 12];
            h.copy_from_slice(&header);
            found.push((
                XzStream {
                    header: h,
                    flags,
                    index_offset,
                    first_block: 0,
                    end_block: 0,
                },
                blocks,
            ));
            end = start;
        }
        found.reverse();
        let mut index = XzIndex {
            streams: Vec::with_capacity(found.len()),
            blocks: Vec::new(),
            total: 0,
        };
        for (mut stream, blocks) in found {
            let s = index.streams.len();
            stream.first_block = index.blocks.len();
            for (offset, unpadded, size) in blocks {
                index.blocks.push(XzBlock {
                    stream: s,
                    offset,
                    unpadded,
                    start: index.total,
                    size,
                });
                index.total += size;
            }
            stream.end_block = index.blocks.len();
            index.streams.push(stream);
        }
        Ok(index)
    }

    /// Number of blocks (a file of one block cannot be read from the middle).
    pub(crate) fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// The block holding decoded offset `at` (`None` at or past the end).
    fn block_at(&self, at: u64) -> Option<usize> {
        let i = self.blocks.partition_point(|b| b.start + b.size <= at);
        (i < self.blocks.len()).then_some(i)
    }

    /// The input of a decoder starting at block `b`: the stream header,
    /// the blocks from `b` to the end of its stream, then an index and a
    /// footer listing just those blocks.
    fn stream_from(&self, file: &Arc<File>, b: usize) -> impl Read + Send {
        let block = self.blocks[b];
        let stream = &self.streams[block.stream];
        let mut index = vec![0u8];
        put_varint(&mut index, (stream.end_block - b) as u64);
        for blk in &self.blocks[b..stream.end_block] {
            put_varint(&mut index, blk.unpadded);
            put_varint(&mut index, blk.size);
        }
        while index.len() % 4 != 0 {
            index.push(0);
        }
        let crc = crc32fast::hash(&index);
        index.extend_from_slice(&crc.to_le_bytes());
        let backward = (index.len() as u32 / 4 - 1).to_le_bytes();
        let mut tail = index;
        let mut footer_body = Vec::with_capacity(6);
        footer_body.extend_from_slice(&backward);
        footer_body.extend_from_slice(&stream.flags);
        tail.extend_from_slice(&crc32fast::hash(&footer_body).to_le_bytes());
        tail.extend_from_slice(&footer_body);
        tail.extend_from_slice(&FOOTER_MAGIC);
        Cursor::new(stream.header.to_vec())
            .chain(Section {
                file: file.clone(),
                pos: block.offset,
                end: stream.index_offset,
            })
            .chain(Cursor::new(tail))
    }
}

/// The records of an index field: (unpadded size, uncompressed size).
fn parse_index(buf: &[u8]) -> io::Result<Vec<(u64, u64)>> {
    if buf.len() < 8 || buf[0] != 0 {
        return Err(bad("no index indicator"));
    }
    let body = buf.len() - 4;
    if u32::from_le_bytes([buf[body], buf[body + 1], buf[body + 2], buf[body + 3]])
        != crc32fast::hash(&buf[..body])
    {
        return Err(bad("index CRC mismatch"));
    }
    let mut pos = 1;
    let count = varint(buf, &mut pos)?;
    let mut records = Vec::new();
    for _ in 0..count {
        let unpadded = varint(buf, &mut pos)?;
        let size = varint(buf, &mut pos)?;
        if unpadded == 0 || pos > body {
            return Err(bad("bad record"));
        }
        records.push((unpadded, size));
    }
    if pos > body || buf[pos..body].iter().any(|b| *b != 0) || body - pos >= 4 {
        return Err(bad("bad index padding"));
    }
    Ok(records)
}

/// Bytes `pos..end` of a file, read at their offset (no shared cursor).
struct Section {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for Section {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let k = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += k as u64;
        Ok(k)
    }
}

type Decoder = liblzma::bufread::XzDecoder<BufReader<Box<dyn Read + Send>>>;

/// A `.tar.xz` read from any decoded offset (see the module docs).
pub(crate) struct XzSeekReader {
    file: Arc<File>,
    index: Arc<XzIndex>,
    check: bool,
    counter: Counter,
    /// Decoded offset of the next byte `read` gives.
    pos: u64,
    /// The decoder, positioned at `pos`; `None` until the first read after
    /// a restart point was chosen.
    decoder: Option<Decoder>,
    /// Where the decoder has to be before `read` gives bytes (a restart
    /// starts at a block boundary and discards up to the target).
    target: u64,
}

impl XzSeekReader {
    pub(crate) fn new(file: File, index: Arc<XzIndex>, check: bool, counter: Counter) -> Self {
        XzSeekReader {
            file: Arc::new(file),
            index,
            check,
            counter,
            pos: 0,
            decoder: None,
            target: 0,
        }
    }

    /// A new decoder at the start of block `b`.
    fn start(&mut self, b: usize) -> io::Result<()> {
        let mut flags = 0;
        if !self.check {
            flags |= liblzma::stream::IGNORE_CHECK;
        }
        let stream = liblzma::stream::Stream::new_stream_decoder(u64::MAX, flags)
            .map_err(io::Error::other)?;
        let input: Box<dyn Read + Send> = Box::new(self.index.stream_from(&self.file, b));
        self.decoder = Some(liblzma::bufread::XzDecoder::new_stream(
            BufReader::with_capacity(INPUT_BUFFER, input),
            stream,
        ));
        self.pos = self.index.blocks[b].start;
        Ok(())
    }

    /// Reads from the decoder into `buf` (the next stream when one ends).
    fn decode(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos >= self.index.total {
                return Ok(0);
            }
            if self.decoder.is_none() {
                let b = self.index.block_at(self.pos).ok_or_else(|| bad("offset"))?;
                self.start(b)?;
            }
            let Some(d) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = d.read(buf)?;
            if n > 0 {
                self.pos += n as u64;
                self.counter.fetch_add(n as u64, Ordering::Relaxed);
                return Ok(n);
            }
            // the stream (as given to this decoder) ended: the next one
            // starts at a block of the next stream
            self.decoder = None;
            let b = self.index.block_at(self.pos);
            if b.is_none_or(|b| self.index.blocks[b].start != self.pos) {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the xz stream ended before the size its index gives",
                ));
            }
        }
    }

    /// Decodes and drops bytes until the decoder is at `target`.
    fn catch_up(&mut self) -> io::Result<()> {
        let mut scratch = [0u8; 64 * 1024];
        while self.pos < self.target {
            let want = usize::try_from(self.target - self.pos)
                .unwrap_or(usize::MAX)
                .min(scratch.len());
            let n = self.decode(&mut scratch[..want])?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }
}

impl Read for XzSeekReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos != self.target {
            self.catch_up()?;
        }
        let n = self.decode(buf)?;
        self.target = self.pos;
        Ok(n)
    }
}

impl Seek for XzSeekReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.target.checked_add_signed(d),
            SeekFrom::End(d) => self.index.total.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        if target > self.index.total {
            // as skipping by reading would: the archive ends inside an entry
            return Err(past_the_end());
        }
        self.target = target;
        // Restart at the target's block when that decodes less than going
        // on from here (or when the target is behind).
        let restart = match self.index.block_at(target) {
            None => {
                self.decoder = None;
                self.pos = target.min(self.index.total);
                self.target = self.pos;
                return Ok(target);
            }
            Some(b) => {
                let from_block = target - self.index.blocks[b].start;
                self.decoder.is_none()
                    || target < self.pos
                    || target - self.pos > from_block + RESTART_COST
            }
        };
        if restart {
            self.decoder = None;
            if let Some(b) = self.index.block_at(target) {
                self.pos = self.index.blocks[b].start;
            }
        }
        Ok(target)
    }
}

fn past_the_end() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "unexpected EOF during skip")
}

/// A decoder that can only go forward: a seek decodes and drops the bytes
/// up to the target (gzip, zstd, single-block xz, or a stream without a
/// readable index).
pub(crate) struct Forward {
    inner: Box<dyn Read + Send>,
    pos: u64,
    counter: Counter,
}

impl Forward {
    pub(crate) fn new(inner: Box<dyn Read + Send>, counter: Counter) -> Forward {
        Forward {
            inner,
            pos: 0,
            counter,
        }
    }
}

impl Read for Forward {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for Forward {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(_) => None,
        }
        .filter(|t| *t >= self.pos)
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, "this stream only reads forward")
        })?;
        let mut left = target - self.pos;
        let mut scratch = [0u8; 64 * 1024];
        while left > 0 {
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(scratch.len());
            let n = self.read(&mut scratch[..want])?;
            if n == 0 {
                return Err(past_the_end());
            }
            left -= n as u64;
        }
        Ok(target)
    }
}

/// A plain tar file: seeks are seeks; counts the bytes read.
pub(crate) struct PlainFile {
    inner: BufReader<File>,
    len: u64,
    counter: Counter,
}

impl PlainFile {
    pub(crate) fn new(file: File, counter: Counter) -> io::Result<PlainFile> {
        Ok(PlainFile {
            len: file.metadata()?.len(),
            inner: BufReader::with_capacity(INPUT_BUFFER, file),
            counter,
        })
    }
}

impl Read for PlainFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for PlainFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let here = self.inner.stream_position()?;
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => here.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        if target > self.len {
            // a file cut inside an entry: as skipping by reading would
            return Err(past_the_end());
        }
        // within the buffer: no system call, no re-read
        let delta = i64::try_from(i128::from(target) - i128::from(here))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seek too far"))?;
        self.inner.seek_relative(delta)?;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("{what}: {e:?}"),
        }
    }

    /// One xz stream of `data` whose blocks decode to `block` bytes each (a
    /// full flush ends a block).
    fn stream_of(data: &[u8], block: usize) -> Vec<u8> {
        use liblzma::stream::{Action, Check, Status, Stream};
        let mut s = ok(Stream::new_easy_encoder(0, Check::Crc64), "encoder");
        let mut out = Vec::with_capacity(data.len() + 4096);
        let chunks: Vec<&[u8]> = data.chunks(block).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let action = if i + 1 == chunks.len() {
                Action::Finish
            } else {
                Action::FullFlush
            };
            let mut input = *chunk;
            loop {
                out.reserve(64 * 1024);
                let before = s.total_in();
                let status = ok(s.process_vec(input, &mut out, action), "encode");
                input = &input[(s.total_in() - before) as usize..];
                if matches!(status, Status::StreamEnd) {
                    break;
                }
            }
        }
        out
    }

    /// An xz file of several blocks and, when `two_streams`, a second
    /// stream after stream padding.
    fn multi_block(data: &[u8], block: usize, two_streams: bool) -> tempfile::NamedTempFile {
        let mut f = ok(tempfile::NamedTempFile::new(), "temp file");
        let bytes = if two_streams {
            let half = data.len() / 2;
            let mut b = stream_of(&data[..half], block);
            b.extend_from_slice(&[0u8; 8]);
            b.extend_from_slice(&stream_of(&data[half..], block));
            b
        } else {
            stream_of(data, block)
        };
        ok(f.write_all(&bytes), "write");
        ok(f.flush(), "flush");
        f
    }

    fn data(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // half compressible, half not
                if (x >> 60) < 8 {
                    b'a'
                } else {
                    x as u8
                }
            })
            .collect()
    }

    fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            match ok(r.read(&mut buf[n..]), "read") {
                0 => break,
                k => n += k,
            }
        }
        n
    }

    fn open(path: &std::path::Path) -> (File, XzIndex) {
        let file = ok(File::open(path), "open");
        let index = ok(XzIndex::read(&file), "index");
        (file, index)
    }

    #[test]
    fn reads_every_offset_of_a_multi_block_file() {
        let d = data(700_000);
        for two in [false, true] {
            let f = multi_block(&d, 64 * 1024, two);
            let (file, index) = open(f.path());
            assert!(index.block_count() >= 10, "{} blocks", index.block_count());
            assert_eq!(index.total, d.len() as u64);
            let counter = Counter::default();
            let mut r = XzSeekReader::new(file, Arc::new(index), true, counter.clone());
            let mut all = Vec::new();
            ok(r.read_to_end(&mut all), "read all");
            assert!(all == d, "sequential read differs (two streams: {two})");
            for at in [
                0u64, 10, 65_536, 65_535, 300_001, 300_100, 699_990, 5, 650_000,
            ] {
                ok(r.seek(SeekFrom::Start(at)), "seek");
                let mut buf = [0u8; 100];
                let n = read_up_to(&mut r, &mut buf);
                let end = (at as usize + 100).min(d.len());
                assert_eq!(
                    &buf[..n],
                    &d[at as usize..end],
                    "at {at}, two streams: {two}"
                );
            }
            // a far seek decodes much less than what it skips
            let before = counter.load(Ordering::Relaxed);
            ok(r.seek(SeekFrom::Start(0)), "seek");
            ok(r.seek(SeekFrom::Current(600_000)), "seek");
            let mut buf = [0u8; 10];
            ok(r.read_exact(&mut buf), "read");
            assert_eq!(&buf, &d[600_000..600_010]);
            let decoded = counter.load(Ordering::Relaxed) - before;
            assert!(
                decoded < 200_000,
                "decoded {decoded} bytes to read 10 at 600,000"
            );
        }
    }

    #[test]
    fn a_damaged_block_is_an_error_not_wrong_bytes() {
        let d = data(300_000);
        let f = multi_block(&d, 64 * 1024, false);
        let (_, index) = open(f.path());
        let at = (index.blocks[2].offset + index.blocks[2].unpadded / 2) as usize;
        let mut bytes = ok(std::fs::read(f.path()), "read");
        bytes[at] ^= 0x55;
        ok(std::fs::write(f.path(), &bytes), "write");
        let (file, index) = open(f.path());
        let mut r = XzSeekReader::new(file, Arc::new(index), true, Counter::default());
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
        assert!(out.len() < d.len() && d.starts_with(&out));
    }

    #[test]
    fn a_truncated_file_has_no_index() {
        let d = data(200_000);
        let f = multi_block(&d, 64 * 1024, false);
        let bytes = ok(std::fs::read(f.path()), "read");
        ok(
            std::fs::write(f.path(), &bytes[..bytes.len() - 40]),
            "write",
        );
        let file = ok(File::open(f.path()), "open");
        assert!(XzIndex::read(&file).is_err());
    }
}
