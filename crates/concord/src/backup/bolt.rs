//! The bolt file format (go.etcd.io/bbolt 1.3), written in one pass and
//! read back: the container etcd's snapshots use, so that etcd's own tools
//! (`etcdctl snapshot status` / `restore`) read a Concord backup.
//!
//! Only what a backup needs: [`BoltWriter`] bulk-loads buckets whose keys
//! arrive sorted, writing pages in ascending order (every page is written
//! once, nothing is freed); [`BoltFile`] finds a bucket and walks its
//! entries in key order.
//!
//! The layout, as bbolt defines it (native byte order, little-endian here):
//! - page 0 and 1: meta pages (`magic`, version 2, page size, the root
//!   bucket's root page, the freelist page, the high-water mark, a txid and
//!   an FNV-1a checksum of the fields before it);
//! - page 2: an empty freelist;
//! - then each bucket's leaf pages in key order, followed by its branch
//!   levels bottom-up; the root bucket (bucket names → bucket headers) last.
//!
//! Invariants of a written file (what `bbolt check` / `tx.Check()` verify):
//! every page below the high-water mark is reachable exactly once (a node
//! larger than a page takes `overflow` following pages); keys in a bucket
//! are strictly increasing; a branch element's key is its child's first key.

use std::io::Write;

/// bbolt's page size for the files written here.
pub const PAGE_SIZE: u64 = 4096;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;
/// A leaf element whose value is a bucket header.
const BUCKET_ELEMENT: u32 = 0x01;
/// The first page a bucket can use (0, 1: meta; 2: freelist).
const FIRST_DATA_PAGE: u64 = 3;
const FREELIST_PGID: u64 = 2;

/// Where a finished file's root bucket is and how many pages it has: what
/// the meta pages at its start say, known only once everything after them
/// was laid out (a first pass to a sink finds them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BoltSummary {
    /// The page of the root bucket.
    pub root: u64,
    /// How many pages the file has.
    pub pages: u64,
}

impl BoltSummary {
    /// The file's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.pages * PAGE_SIZE
    }
}

/// Writes a bolt file front to back. Buckets are written one at a time
/// ([`Self::begin_bucket`], [`Self::put`] in key order, [`Self::end_bucket`]),
/// then [`Self::finish`] writes the root bucket naming them.
pub struct BoltWriter<'a> {
    out: &'a mut dyn Write,
    next_page: u64,
    /// The open bucket's leaf being filled and the first key + page of each
    /// node already written at the level above the leaves.
    leaf: Node,
    children: Vec<(Vec<u8>, u64)>,
    last_key: Option<Vec<u8>>,
    buckets: Vec<(Vec<u8>, u64)>,
}

/// A node being filled: its elements' headers and keys/values.
#[derive(Default)]
struct Node {
    entries: Vec<(u32, Vec<u8>, Vec<u8>)>,
    size: usize,
}

impl Node {
    fn fits(&self, key: usize, value: usize) -> bool {
        self.entries.is_empty() || PAGE_HEADER + self.size + ELEMENT + key + value <= PAGE_SIZE as usize
    }

    fn push(&mut self, flags: u32, key: Vec<u8>, value: Vec<u8>) {
        self.size += ELEMENT + key.len() + value.len();
        self.entries.push((flags, key, value));
    }
}

impl<'a> BoltWriter<'a> {
    /// Starts a file whose meta pages say `summary` (from a first pass; a
    /// first pass itself passes the default and discards what it writes).
    pub fn new(out: &'a mut dyn Write, summary: BoltSummary) -> std::io::Result<Self> {
        for (id, txid) in [(0u64, 0u64), (1, 1)] {
            out.write_all(&meta_page(id, txid, summary))?;
        }
        out.write_all(&page(FREELIST_PGID, FREELIST_PAGE, 0, &[]))?;
        Ok(BoltWriter {
            out,
            next_page: FIRST_DATA_PAGE,
            leaf: Node::default(),
            children: Vec::new(),
            last_key: None,
            buckets: Vec::new(),
        })
    }

    /// Starts the next bucket: what is added until it is finished goes into it.
    pub fn begin_bucket(&mut self) {
        self.leaf = Node::default();
        self.children.clear();
        self.last_key = None;
    }

    /// Adds an entry to the open bucket; keys must come strictly increasing.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        self.put_element(0, key, value)
    }

    fn put_element(&mut self, flags: u32, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        if key.is_empty() || self.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(std::io::Error::other("bolt keys must be non-empty and strictly increasing"));
        }
        self.last_key = Some(key.to_vec());
        if !self.leaf.fits(key.len(), value.len()) {
            self.flush_leaf()?;
        }
        self.leaf.push(flags, key.to_vec(), value.to_vec());
        Ok(())
    }

    fn flush_leaf(&mut self) -> std::io::Result<()> {
        let node = std::mem::take(&mut self.leaf);
        let first = node.entries.first().map(|e| e.1.clone()).unwrap_or_default();
        let id = self.write_node(LEAF_PAGE, &node)?;
        self.children.push((first, id));
        Ok(())
    }

    /// Closes the open bucket under `name`: writes its last leaf (an empty
    /// bucket gets one empty leaf) and its branch levels.
    pub fn end_bucket(&mut self, name: &[u8]) -> std::io::Result<()> {
        if !self.leaf.entries.is_empty() || self.children.is_empty() {
            self.flush_leaf()?;
        }
        let root = self.write_branches()?;
        self.buckets.push((name.to_vec(), root));
        Ok(())
    }

    /// Writes branch levels over `children` until one node remains; its page.
    fn write_branches(&mut self) -> std::io::Result<u64> {
        let mut level = std::mem::take(&mut self.children);
        while level.len() > 1 {
            let mut above = Vec::new();
            let mut node = Node::default();
            for (key, child) in level {
                if !node.fits(key.len(), 8) {
                    let first = node.entries[0].1.clone();
                    above.push((first, self.write_node(BRANCH_PAGE, &std::mem::take(&mut node))?));
                }
                node.push(0, key, child.to_le_bytes().to_vec());
            }
            let first = node.entries[0].1.clone();
            above.push((first, self.write_node(BRANCH_PAGE, &node)?));
            level = above;
        }
        Ok(level[0].1)
    }

    /// Writes the root bucket (every bucket's name and root page, in name
    /// order) and returns what the meta pages must say.
    pub fn finish(mut self) -> std::io::Result<BoltSummary> {
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.sort();
        self.begin_bucket();
        for (name, root) in &buckets {
            let mut header = root.to_le_bytes().to_vec();
            header.extend_from_slice(&0u64.to_le_bytes()); // sequence
            self.put_element(BUCKET_ELEMENT, name, &header)?;
        }
        if !self.leaf.entries.is_empty() || self.children.is_empty() {
            self.flush_leaf()?;
        }
        let root = self.write_branches()?;
        self.out.flush()?;
        Ok(BoltSummary { root, pages: self.next_page })
    }

    /// Writes `node` as a leaf or branch page (with overflow pages if it is
    /// larger than one) and returns its page id.
    fn write_node(&mut self, flags: u16, node: &Node) -> std::io::Result<u64> {
        let count = node.entries.len();
        let id = self.next_page;
        let mut body = Vec::with_capacity(node.size);
        let mut data_at = count * ELEMENT;
        for (i, (element_flags, key, value)) in node.entries.iter().enumerate() {
            let pos = (data_at - i * ELEMENT) as u32;
            if flags == LEAF_PAGE {
                body.extend_from_slice(&element_flags.to_le_bytes());
                body.extend_from_slice(&pos.to_le_bytes());
                body.extend_from_slice(&(key.len() as u32).to_le_bytes());
                body.extend_from_slice(&(value.len() as u32).to_le_bytes());
            } else {
                body.extend_from_slice(&pos.to_le_bytes());
                body.extend_from_slice(&(key.len() as u32).to_le_bytes());
                body.extend_from_slice(value); // the child's page id
            }
            data_at += key.len() + if flags == LEAF_PAGE { value.len() } else { 0 };
        }
        for (_, key, value) in &node.entries {
            body.extend_from_slice(key);
            if flags == LEAF_PAGE {
                body.extend_from_slice(value);
            }
        }
        let pages = (PAGE_HEADER + body.len()).div_ceil(PAGE_SIZE as usize).max(1) as u64;
        let count = u16::try_from(count).map_err(|_| std::io::Error::other("too many elements in one bolt page"))?;
        let overflow = u32::try_from(pages - 1).map_err(|_| std::io::Error::other("a bolt value is too large"))?;
        let mut bytes = page(id, flags, count, &body);
        bytes.resize((pages * PAGE_SIZE) as usize, 0);
        bytes[12..16].copy_from_slice(&overflow.to_le_bytes());
        self.out.write_all(&bytes)?;
        self.next_page += pages;
        Ok(id)
    }
}

/// One page: the header and `body`, padded to the page size.
fn page(id: u64, flags: u16, count: u16, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(PAGE_SIZE as usize);
    bytes.extend_from_slice(&id.to_le_bytes());
    bytes.extend_from_slice(&flags.to_le_bytes());
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes()); // overflow
    bytes.extend_from_slice(body);
    if bytes.len() < PAGE_SIZE as usize {
        bytes.resize(PAGE_SIZE as usize, 0);
    }
    bytes
}

fn meta_page(id: u64, txid: u64, summary: BoltSummary) -> Vec<u8> {
    let mut meta = Vec::with_capacity(64);
    meta.extend_from_slice(&MAGIC.to_le_bytes());
    meta.extend_from_slice(&VERSION.to_le_bytes());
    meta.extend_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
    meta.extend_from_slice(&0u32.to_le_bytes()); // flags
    meta.extend_from_slice(&summary.root.to_le_bytes());
    meta.extend_from_slice(&0u64.to_le_bytes()); // the root bucket's sequence
    meta.extend_from_slice(&FREELIST_PGID.to_le_bytes());
    meta.extend_from_slice(&summary.pages.to_le_bytes());
    meta.extend_from_slice(&txid.to_le_bytes());
    let checksum = fnv1a64(&meta);
    meta.extend_from_slice(&checksum.to_le_bytes());
    page(id, META_PAGE, 0, &meta)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Called with each entry of a leaf: its element flags, key and value.
pub type EntryVisitor<'a> = dyn FnMut(u32, &[u8], &[u8]) -> Result<(), String> + 'a;

/// A bolt file opened for reading (through `pread`, never whole in memory).
pub struct BoltFile {
    file: std::fs::File,
    root: u64,
    pages: u64,
}

/// One page with its overflow, as read.
struct PageNode {
    flags: u16,
    count: usize,
    bytes: Vec<u8>,
}

impl PageNode {
    /// An inline bucket's page, as its parent's value holds it.
    fn inline(page: &[u8]) -> Result<PageNode, String> {
        let header = page.get(..PAGE_HEADER).ok_or("an inline bolt bucket is short")?;
        let flags = u16::from_le_bytes([header[8], header[9]]);
        let count = u16::from_le_bytes([header[10], header[11]]) as usize;
        Ok(PageNode { flags, count, bytes: page.to_vec() })
    }

    /// Element `i`'s key and (for a leaf) flags and value, or (for a
    /// branch) the child's page id in the value's place.
    fn element(&self, i: usize) -> Result<(u32, &[u8], &[u8]), String> {
        let at = PAGE_HEADER + i * ELEMENT;
        let field = |o: usize| -> Result<u32, String> {
            let b = self.bytes.get(at + o..at + o + 4).ok_or("a bolt element lies outside its page")?;
            Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        let slice =
            |from: usize, len: usize| self.bytes.get(from..from + len).ok_or("a bolt key lies outside its page");
        if self.flags & LEAF_PAGE != 0 {
            let (flags, pos, ksize, vsize) = (field(0)?, field(4)? as usize, field(8)? as usize, field(12)? as usize);
            Ok((flags, slice(at + pos, ksize)?, slice(at + pos + ksize, vsize)?))
        } else {
            let (pos, ksize) = (field(0)? as usize, field(4)? as usize);
            Ok((0, slice(at + pos, ksize)?, slice(at + 8, 8)?))
        }
    }
}

impl BoltFile {
    /// Opens `file` if it starts with a valid bolt meta page (the newer of
    /// the two that check out); `Ok(None)` if it is not a bolt file.
    pub fn open(file: std::fs::File) -> Result<Option<Self>, String> {
        let mut best: Option<(u64, u64, u64)> = None;
        for id in 0..2u64 {
            let mut bytes = vec![0u8; PAGE_HEADER + 64];
            if read_at(&file, id * PAGE_SIZE, &mut bytes).is_err() {
                continue;
            }
            let meta = &bytes[PAGE_HEADER..];
            let u32_at = |o: usize| u32::from_le_bytes(meta[o..o + 4].try_into().expect("4 bytes"));
            let u64_at = |o: usize| u64::from_le_bytes(meta[o..o + 8].try_into().expect("8 bytes"));
            let valid = u32_at(0) == MAGIC
                && u32_at(4) == VERSION
                && u64::from(u32_at(8)) == PAGE_SIZE
                && fnv1a64(&meta[..56]) == u64_at(56);
            if valid && best.is_none_or(|(txid, _, _)| u64_at(48) > txid) {
                best = Some((u64_at(48), u64_at(16), u64_at(40)));
            }
        }
        Ok(best.map(|(_, root, pages)| BoltFile { file, root, pages }))
    }

    fn node(&self, id: u64) -> Result<PageNode, String> {
        // Pages 0 and 1 are the meta pages; any other may hold a node (in a
        // file bbolt wrote, the freelist moves and page 2 is reused).
        if id < 2 || id >= self.pages {
            return Err(format!("bolt page {id} is out of bounds"));
        }
        let mut header = [0u8; PAGE_HEADER];
        read_at(&self.file, id * PAGE_SIZE, &mut header)?;
        let flags = u16::from_le_bytes([header[8], header[9]]);
        let count = u16::from_le_bytes([header[10], header[11]]) as usize;
        let overflow = u64::from(u32::from_le_bytes(header[12..16].try_into().expect("4 bytes")));
        if id + overflow >= self.pages || flags & (LEAF_PAGE | BRANCH_PAGE) == 0 {
            return Err(format!("bolt page {id} is not a leaf or branch page within the file"));
        }
        let mut bytes = vec![0u8; ((overflow + 1) * PAGE_SIZE) as usize];
        read_at(&self.file, id * PAGE_SIZE, &mut bytes)?;
        Ok(PageNode { flags, count, bytes })
    }

    /// The top-level bucket `name`, if there is one.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket>, String> {
        Ok(self.buckets()?.into_iter().find(|(n, _)| n == name).map(|(_, bucket)| bucket))
    }

    /// The top-level buckets, in name order.
    pub fn buckets(&self) -> Result<Vec<(Vec<u8>, Bucket)>, String> {
        let mut buckets = Vec::new();
        self.for_each_leaf(&Bucket::Pages(self.root), &mut |flags, key, value| {
            if flags & BUCKET_ELEMENT != 0 {
                let bucket = Bucket::from_value(value).ok_or("a bolt bucket header is short")?;
                buckets.push((key.to_vec(), bucket));
            }
            Ok(())
        })?;
        Ok(buckets)
    }

    /// The database's size in bytes (its pages; a checksum after them is not part of it).
    pub fn size(&self) -> u64 {
        self.pages * PAGE_SIZE
    }

    /// The leaves of `bucket`, in key order.
    pub fn leaves(&self, bucket: &Bucket) -> Result<Vec<Leaf>, String> {
        let root = match bucket {
            Bucket::Inline(page) => return Ok(vec![Leaf::Inline(page.clone())]),
            Bucket::Pages(root) => *root,
        };
        let mut leaves = Vec::new();
        let mut stack = vec![root];
        // A damaged or crafted file could point back up the tree.
        let mut seen = std::collections::HashSet::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                return Err(format!("bolt page {id} is reached twice"));
            }
            let node = self.node(id)?;
            if node.flags & LEAF_PAGE != 0 {
                leaves.push(Leaf::Page(id));
                continue;
            }
            for i in (0..node.count).rev() {
                let (_, _, child) = node.element(i)?;
                stack.push(u64::from_le_bytes(child.try_into().map_err(|_| "a bolt branch element is short")?));
            }
        }
        Ok(leaves)
    }

    /// Calls `f` with each entry of `leaf`: flags, key, value.
    pub fn for_each_in_leaf(&self, leaf: &Leaf, f: &mut EntryVisitor<'_>) -> Result<(), String> {
        let node = match leaf {
            Leaf::Page(id) => self.node(*id)?,
            Leaf::Inline(page) => PageNode::inline(page)?,
        };
        if node.flags & LEAF_PAGE == 0 {
            return Err("a bolt leaf is not a leaf page".into());
        }
        for i in 0..node.count {
            let (flags, key, value) = node.element(i)?;
            f(flags, key, value)?;
        }
        Ok(())
    }

    /// Calls `f` with each entry of `bucket`, in key order.
    pub fn for_each_leaf(&self, bucket: &Bucket, f: &mut EntryVisitor<'_>) -> Result<(), String> {
        for leaf in self.leaves(bucket)? {
            self.for_each_in_leaf(&leaf, f)?;
        }
        Ok(())
    }
}

/// Where a bucket's entries are: its own pages, or — a small bucket, as
/// bbolt keeps them — one page stored inline in its parent's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bucket {
    /// Its own pages, from this root page.
    Pages(u64),
    /// One page inside its parent's value.
    Inline(Vec<u8>),
}

impl Bucket {
    /// A bucket header (root page, sequence) and, for root page 0, the
    /// inline page after it.
    fn from_value(value: &[u8]) -> Option<Bucket> {
        let root = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
        match root {
            0 => Some(Bucket::Inline(value.get(16..)?.to_vec())),
            root => Some(Bucket::Pages(root)),
        }
    }
}

/// One leaf of a bucket: a page of the file, or an inline bucket's page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    /// A page of the file.
    Page(u64),
    /// An inline bucket's page.
    Inline(Vec<u8>),
}

fn read_at(file: &std::fs::File, offset: u64, buf: &mut [u8]) -> Result<(), String> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset).map_err(|e| format!("cannot read the bolt file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn write(buckets: &[(&[u8], Entries)]) -> Vec<u8> {
        let run = |summary: BoltSummary, out: &mut Vec<u8>| {
            let mut w = BoltWriter::new(out, summary).unwrap();
            for (name, entries) in buckets {
                w.begin_bucket();
                for (k, v) in entries {
                    w.put(k, v).unwrap();
                }
                w.end_bucket(name).unwrap();
            }
            w.finish().unwrap()
        };
        let summary = run(BoltSummary::default(), &mut Vec::new());
        let mut out = Vec::new();
        assert_eq!(run(summary, &mut out), summary, "the second pass lays out the same pages");
        assert_eq!(out.len() as u64, summary.bytes());
        out
    }

    fn read_back(bytes: &[u8], name: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        let path = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(path.path(), bytes).unwrap();
        let file = BoltFile::open(std::fs::File::open(path.path()).unwrap()).unwrap().unwrap();
        let root = file.bucket(name).unwrap()?;
        let mut entries = Vec::new();
        for leaf in file.leaves(&root).unwrap() {
            file.for_each_in_leaf(&leaf, &mut |_, k, v| {
                entries.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
        }
        Some(entries)
    }

    #[test]
    fn buckets_of_many_pages_and_large_values_read_back_in_order() {
        let many: Vec<_> =
            (0u32..20_000).map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; (i % 300) as usize])).collect();
        let large = vec![(b"a".to_vec(), vec![7u8; 3 * PAGE_SIZE as usize + 5]), (b"b".to_vec(), vec![1u8; 10])];
        let bytes = write(&[(b"many", many.clone()), (b"empty", vec![]), (b"large", large.clone())]);
        assert_eq!(read_back(&bytes, b"many").unwrap(), many);
        assert_eq!(read_back(&bytes, b"large").unwrap(), large);
        assert_eq!(read_back(&bytes, b"empty").unwrap(), vec![]);
        assert!(read_back(&bytes, b"missing").is_none());
    }

    #[test]
    fn every_page_below_the_high_water_mark_is_reached_exactly_once() {
        let many: Vec<_> = (0u32..5_000).map(|i| (i.to_be_bytes().to_vec(), vec![0u8; 100])).collect();
        let bytes = write(&[(b"k", many), (b"v", vec![(b"x".to_vec(), vec![0u8; 9000])])]);
        let path = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(path.path(), &bytes).unwrap();
        let file = BoltFile::open(std::fs::File::open(path.path()).unwrap()).unwrap().unwrap();
        let mut seen = vec![0u32; file.pages as usize];
        seen[0] += 1;
        seen[1] += 1;
        seen[2] += 1;
        let mut visit = |id: u64| {
            let node = file.node(id).unwrap();
            let overflow = node.bytes.len() as u64 / PAGE_SIZE;
            (id..id + overflow).for_each(|p| seen[p as usize] += 1);
            node
        };
        let mut stack = vec![file.root];
        while let Some(id) = stack.pop() {
            let node = visit(id);
            for i in 0..node.count {
                let (flags, _, value) = node.element(i).unwrap();
                if node.flags & BRANCH_PAGE != 0 {
                    stack.push(u64::from_le_bytes(value.try_into().unwrap()));
                } else if flags & BUCKET_ELEMENT != 0 {
                    stack.push(u64::from_le_bytes(value[..8].try_into().unwrap()));
                }
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "pages seen other than once: {seen:?}");
    }

    #[test]
    fn keys_out_of_order_are_refused() {
        let mut out = Vec::new();
        let mut w = BoltWriter::new(&mut out, BoltSummary::default()).unwrap();
        w.begin_bucket();
        w.put(b"b", b"").unwrap();
        assert!(w.put(b"a", b"").is_err());
        assert!(w.put(b"b", b"").is_err());
    }

    #[test]
    fn a_branch_that_points_back_up_is_refused() {
        let many: Vec<_> = (0u32..2_000).map(|i| (i.to_be_bytes().to_vec(), vec![0u8; 100])).collect();
        let mut bytes = write(&[(b"k", many)]);
        let path = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(path.path(), &bytes).unwrap();
        let file = BoltFile::open(std::fs::File::open(path.path()).unwrap()).unwrap().unwrap();
        let Some(Bucket::Pages(root)) = file.bucket(b"k").unwrap() else { panic!("a paged bucket") };
        // Point the root branch's first child at the root itself.
        let at = (root * PAGE_SIZE) as usize + PAGE_HEADER + 8;
        bytes[at..at + 8].copy_from_slice(&root.to_le_bytes());
        std::fs::write(path.path(), &bytes).unwrap();
        let file = BoltFile::open(std::fs::File::open(path.path()).unwrap()).unwrap().unwrap();
        let refused = file.leaves(&Bucket::Pages(root)).unwrap_err();
        assert!(refused.contains("reached twice"), "{refused}");
    }

    #[test]
    fn a_file_that_is_not_bolt_is_told_apart() {
        let path = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(path.path(), b"concord-backup/1 and more bytes than that").unwrap();
        assert!(BoltFile::open(std::fs::File::open(path.path()).unwrap()).unwrap().is_none());
    }
}
