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
//!
//! Invariants of the reader, whatever the file holds (a backup is untrusted
//! input: `concord snapshot status` / `restore` take any file):
//! - every size, count, offset and page id read from the file is checked
//!   against the file's length (or the page holding it) before anything is
//!   allocated or indexed: the meta page's page count against the file's
//!   length, a page's overflow against that page count, an element's key
//!   and value against its page — so no buffer is larger than the file, and
//!   a bad value is an error naming it, never a panic or an abort;
//! - no page is reached twice, from any bucket (checked once for the whole
//!   file when it is opened, and again by each walk): a cycle of branch
//!   pages, two buckets sharing a subtree or a page inside another's
//!   overflow is refused, so every walk reads each page at most once and
//!   ends;
//! - a leaf's keys and values together fit the bytes after its elements, so
//!   what a visitor copies out of a leaf is never more than the leaf.
//!
//! Walks are loops over an explicit stack (no recursion), so a deep or
//! crafted tree cannot exhaust the thread's stack.

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
        let body = node_body(flags, node);
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

/// A node's elements and then its keys (and a leaf's values): what follows
/// the page header.
fn node_body(flags: u16, node: &Node) -> Vec<u8> {
    let count = node.entries.len();
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
    body
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
    /// The meta page's page count, checked against the file's length: every
    /// page id and overflow read later is checked against it.
    pages: u64,
}

/// A page's header, as read: its flags, element count and overflow pages.
#[derive(Debug, Clone, Copy)]
struct PageHeader {
    flags: u16,
    count: usize,
    overflow: u64,
}

impl PageHeader {
    fn parse(header: &[u8; PAGE_HEADER]) -> Self {
        PageHeader {
            flags: u16::from_le_bytes([header[8], header[9]]),
            count: usize::from(u16::from_le_bytes([header[10], header[11]])),
            overflow: u64::from(u32::from_le_bytes([header[12], header[13], header[14], header[15]])),
        }
    }

    fn is_leaf(&self) -> bool {
        self.flags & LEAF_PAGE != 0
    }
}

/// One page with its overflow, as read (or an inline bucket's page).
struct PageNode {
    /// The page's id; `None` for an inline bucket's page.
    id: Option<u64>,
    header: PageHeader,
    bytes: Vec<u8>,
}

/// The `N` bytes of `bytes` at `at`, if it has them.
fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

impl PageNode {
    /// An inline bucket's page, as its parent's value holds it.
    fn inline(page: &[u8]) -> Result<PageNode, String> {
        let header: [u8; PAGE_HEADER] =
            array_at(page, 0).ok_or("an inline bolt bucket is shorter than a page header")?;
        Ok(PageNode { id: None, header: PageHeader::parse(&header), bytes: page.to_vec() })
    }

    /// What the page is, for errors.
    fn name(&self) -> String {
        match self.id {
            Some(id) => format!("bolt page {id}"),
            None => "an inline bolt bucket".into(),
        }
    }

    /// Element `i`'s key and (for a leaf) flags and value, or (for a
    /// branch) the child's page id in the value's place. Every position
    /// and length is checked against the page before it is used.
    fn element(&self, i: usize) -> Result<(u32, &[u8], &[u8]), String> {
        let past = || {
            format!("{}: element {i} of {} lies past its {} bytes", self.name(), self.header.count, self.bytes.len())
        };
        let at = i.checked_mul(ELEMENT).and_then(|o| o.checked_add(PAGE_HEADER)).ok_or_else(past)?;
        let header: [u8; ELEMENT] = array_at(&self.bytes, at).ok_or_else(past)?;
        let u32_at = |o: usize| u32::from_le_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
        let usize_at = |o: usize| u32_at(o) as usize;
        // `pos` counts from the element's own start.
        let slice = |pos: Option<usize>, len: usize, what: &str| {
            pos.and_then(|pos| at.checked_add(pos))
                .and_then(|from| self.bytes.get(from..from.checked_add(len)?))
                .ok_or_else(|| {
                    format!(
                        "{}: the {len}-byte {what} of element {i} lies outside its {} bytes",
                        self.name(),
                        self.bytes.len()
                    )
                })
        };
        if self.header.is_leaf() {
            let (flags, pos, ksize, vsize) = (u32_at(0), usize_at(4), usize_at(8), usize_at(12));
            let key = slice(Some(pos), ksize, "key")?;
            let value = slice(pos.checked_add(ksize), vsize, "value")?;
            Ok((flags, key, value))
        } else {
            let (pos, ksize) = (usize_at(0), usize_at(4));
            Ok((0, slice(Some(pos), ksize, "key")?, slice(Some(8), 8, "child page id")?))
        }
    }

    /// How many elements the page has, checked to fit it.
    fn count(&self) -> Result<usize, String> {
        let count = self.header.count;
        match count.checked_mul(ELEMENT).and_then(|e| e.checked_add(PAGE_HEADER)) {
            Some(end) if end <= self.bytes.len() => Ok(count),
            _ => Err(format!("{} claims {count} elements, more than its {} bytes hold", self.name(), self.bytes.len())),
        }
    }

    /// Branch element `i`'s child page.
    fn child(&self, i: usize) -> Result<u64, String> {
        let (_, _, child) = self.element(i)?;
        let child = child.try_into().map_err(|_| format!("{}: element {i} is short", self.name()))?;
        Ok(u64::from_le_bytes(child))
    }

    /// Calls `f` with each entry of a leaf. Their keys and values together
    /// must fit the bytes after the elements (as in any file bbolt wrote,
    /// where they follow one another): entries pointing at the same bytes
    /// would have `f` copy more than the page holds.
    fn for_each_entry(&self, f: &mut EntryVisitor<'_>) -> Result<(), String> {
        if !self.header.is_leaf() {
            return Err(format!("{} is a leaf of its bucket but not a leaf page", self.name()));
        }
        let count = self.count()?;
        // `count` checked that the elements fit.
        let data = self.bytes.len() - PAGE_HEADER - count * ELEMENT;
        let mut claimed = 0usize;
        for i in 0..count {
            let (flags, key, value) = self.element(i)?;
            claimed = claimed.saturating_add(key.len()).saturating_add(value.len());
            if claimed > data {
                return Err(format!(
                    "{}: the keys and values of its first {} elements take {claimed} bytes, \
                     more than the {data} it has for them",
                    self.name(),
                    i + 1
                ));
            }
            f(flags, key, value)?;
        }
        Ok(())
    }
}

/// The pages a walk has reached (each with its overflow): none may be
/// reached twice.
struct Reached(Vec<bool>);

impl Reached {
    fn new(pages: u64) -> Result<Self, String> {
        let pages = usize::try_from(pages).map_err(|_| format!("a bolt file of {pages} pages is too large"))?;
        Ok(Reached(vec![false; pages]))
    }

    /// Marks page `id` and its overflow, which [`BoltFile::header`] checked
    /// lie within the file.
    fn mark(&mut self, id: u64, header: &PageHeader) -> Result<(), String> {
        for page in id..=id + header.overflow {
            match usize::try_from(page).ok().and_then(|p| self.0.get_mut(p)) {
                Some(seen) if *seen => return Err(format!("bolt page {page} is reached twice")),
                Some(seen) => *seen = true,
                None => return Err(format!("bolt page {page} is past the end of the file")),
            }
        }
        Ok(())
    }
}

impl BoltFile {
    /// Opens `file` if it starts with a valid bolt meta page (the newer of
    /// the two that check out); `Ok(None)` if it is not a bolt file. The
    /// meta page's page count must lie within the file, and no page of any
    /// bucket may be reached twice (`check_pages`).
    pub fn open(file: std::fs::File) -> Result<Option<Self>, String> {
        let len = file.metadata().map_err(|e| format!("cannot read the bolt file: {e}"))?.len();
        let mut best: Option<(u64, u64, u64, u64)> = None;
        for id in 0..2u64 {
            let mut bytes = [0u8; PAGE_HEADER + 64];
            if read_at(&file, id * PAGE_SIZE, &mut bytes).is_err() {
                continue;
            }
            let meta = &bytes[PAGE_HEADER..];
            let u32_at = |o: usize| array_at(meta, o).map(u32::from_le_bytes).unwrap_or_default();
            let u64_at = |o: usize| array_at(meta, o).map(u64::from_le_bytes).unwrap_or_default();
            let valid = u32_at(0) == MAGIC
                && u32_at(4) == VERSION
                && u64::from(u32_at(8)) == PAGE_SIZE
                && fnv1a64(&meta[..56]) == u64_at(56);
            if valid && best.is_none_or(|(_, txid, _, _)| u64_at(48) > txid) {
                best = Some((id, u64_at(48), u64_at(16), u64_at(40)));
            }
        }
        let Some((meta, _, root, pages)) = best else { return Ok(None) };
        // Checked before anything trusts it: every later bound rests on it.
        if pages > len / PAGE_SIZE {
            return Err(format!(
                "bolt meta page {meta} claims {pages} pages of {PAGE_SIZE} bytes, past the end of the {len}-byte file"
            ));
        }
        let db = BoltFile { file, root, pages };
        db.check_pages()?;
        Ok(Some(db))
    }

    /// Walks every bucket's pages from the root bucket (branches read
    /// whole, a bucket's leaves by their headers), refusing a page reached
    /// twice: afterwards no two buckets share a page and no page lies in
    /// another's overflow, so a walk of every bucket reads the file at most
    /// once more.
    fn check_pages(&self) -> Result<(), String> {
        let mut reached = Reached::new(self.pages)?;
        let mut trees = vec![(self.root, true)];
        let mut stack = Vec::new();
        while let Some((root, is_root_bucket)) = trees.pop() {
            stack.push(root);
            while let Some(id) = stack.pop() {
                let header = self.header(id)?;
                reached.mark(id, &header)?;
                if header.is_leaf() && !is_root_bucket {
                    continue;
                }
                let node = self.read_node(id, header)?;
                if !header.is_leaf() {
                    for i in 0..node.count()? {
                        stack.push(node.child(i)?);
                    }
                    continue;
                }
                node.for_each_entry(&mut |flags, _, value| {
                    if flags & BUCKET_ELEMENT != 0
                        && let Some(root) = Bucket::root_page(value)
                        && root != 0
                    {
                        trees.push((root, false));
                    }
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// The header of page `id`, which must be a leaf or branch page whose
    /// overflow lies within the file.
    fn header(&self, id: u64) -> Result<PageHeader, String> {
        // Pages 0 and 1 are the meta pages; any other may hold a node (in a
        // file bbolt wrote, the freelist moves and page 2 is reused).
        if id < 2 {
            return Err(format!("bolt page {id} is a meta page, not a leaf or branch"));
        }
        if id >= self.pages {
            return Err(format!("bolt page {id} is past the file's {} pages", self.pages));
        }
        let mut bytes = [0u8; PAGE_HEADER];
        read_at(&self.file, id * PAGE_SIZE, &mut bytes)?;
        let header = PageHeader::parse(&bytes);
        if header.flags & (LEAF_PAGE | BRANCH_PAGE) == 0 {
            return Err(format!("bolt page {id} is not a leaf or branch page (flags {:#x})", header.flags));
        }
        // `id < pages`, so `pages - id` does not wrap.
        if header.overflow >= self.pages - id {
            return Err(format!(
                "bolt page {id} claims {} overflow pages, past the end of the {}-byte database ({} pages)",
                header.overflow,
                self.size(),
                self.pages
            ));
        }
        Ok(header)
    }

    /// Page `id` whole (`header` is [`Self::header`]'s): never more than the
    /// file holds, as `header` checked its overflow.
    fn read_node(&self, id: u64, header: PageHeader) -> Result<PageNode, String> {
        let len = usize::try_from((header.overflow + 1) * PAGE_SIZE)
            .map_err(|_| format!("bolt page {id} with {} overflow pages is too large", header.overflow))?;
        let mut bytes = buffer(len);
        read_at(&self.file, id * PAGE_SIZE, &mut bytes)?;
        Ok(PageNode { id: Some(id), header, bytes })
    }

    fn node(&self, id: u64) -> Result<PageNode, String> {
        self.read_node(id, self.header(id)?)
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

    /// The database's size in bytes (its pages; a checksum after them is
    /// not part of it). No more than the file's length.
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
        // A damaged or crafted file could point back up the tree, or into
        // another page's overflow.
        let mut reached = Reached::new(self.pages)?;
        while let Some(id) = stack.pop() {
            let header = self.header(id)?;
            reached.mark(id, &header)?;
            if header.is_leaf() {
                leaves.push(Leaf::Page(id));
                continue;
            }
            let node = self.read_node(id, header)?;
            for i in (0..node.count()?).rev() {
                stack.push(node.child(i)?);
            }
        }
        Ok(leaves)
    }

    /// Calls `f` with each entry of `leaf`: flags, key, value.
    pub fn for_each_in_leaf(&self, leaf: &Leaf, f: &mut EntryVisitor<'_>) -> Result<(), String> {
        match leaf {
            Leaf::Page(id) => self.node(*id)?,
            Leaf::Inline(page) => PageNode::inline(page)?,
        }
        .for_each_entry(f)
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
        match Self::root_page(value)? {
            0 => Some(Bucket::Inline(value.get(16..)?.to_vec())),
            root => Some(Bucket::Pages(root)),
        }
    }

    /// The root page a bucket header names (0: the bucket is inline).
    fn root_page(value: &[u8]) -> Option<u64> {
        array_at(value, 0).map(u64::from_le_bytes)
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

/// A zeroed buffer for `len` bytes of the file; every caller bounded `len`
/// by the file's length first.
fn buffer(len: usize) -> Vec<u8> {
    #[cfg(test)]
    probe::allocating(len);
    vec![0u8; len]
}

fn read_at(file: &std::fs::File, offset: u64, buf: &mut [u8]) -> Result<(), String> {
    #[cfg(test)]
    probe::reading(buf.len());
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset).map_err(|e| format!("cannot read the bolt file: {e}"))
}

/// What the reader did on this thread, for tests to bound: the largest
/// buffer it asked for and the bytes it read.
#[cfg(test)]
pub(super) mod probe {
    use std::cell::Cell;

    thread_local! {
        static LARGEST: Cell<usize> = const { Cell::new(0) };
        static READ: Cell<u64> = const { Cell::new(0) };
    }

    pub(super) fn allocating(len: usize) {
        LARGEST.with(|l| l.set(l.get().max(len)));
    }

    pub(super) fn reading(len: usize) {
        READ.with(|r| r.set(r.get().saturating_add(len as u64)));
    }

    /// Starts counting afresh.
    pub(in crate::backup) fn reset() {
        LARGEST.with(|l| l.set(0));
        READ.with(|r| r.set(0));
    }

    /// The largest buffer asked for and the bytes read since [`reset`].
    pub(in crate::backup) fn seen() -> (usize, u64) {
        (LARGEST.with(Cell::get), READ.with(Cell::get))
    }
}

#[cfg(test)]
pub(super) mod tests;
