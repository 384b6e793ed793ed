//! The bolt writer and reader: round trips, and files damaged or crafted
//! to make the reader allocate, loop or panic (refused with what is wrong).
//! The helpers here are shared with `backup::fuzz_tests`; a longer fuzz:
//! `PROPTEST_CASES=20000 cargo test -p concord --lib backup::`.

use std::io::Write;

use proptest::prelude::*;

use super::*;

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// `buckets` written as a bolt file, with `inline` buckets (one page each,
/// kept in the root bucket's value, as bbolt keeps small buckets).
pub(in crate::backup) fn write_with_inline(buckets: &[(&[u8], Entries)], inline: &[(&[u8], Entries)]) -> Vec<u8> {
    let run = |summary: BoltSummary, out: &mut Vec<u8>| {
        let mut w = BoltWriter::new(out, summary).unwrap();
        for (name, entries) in buckets {
            w.begin_bucket();
            for (k, v) in entries {
                w.put(k, v).unwrap();
            }
            w.end_bucket(name).unwrap();
        }
        // `finish`, with the inline buckets among the others.
        let mut root: Entries = std::mem::take(&mut w.buckets)
            .into_iter()
            .map(|(name, root)| (name, [root.to_le_bytes(), 0u64.to_le_bytes()].concat()))
            .collect();
        root.extend(inline.iter().map(|(name, entries)| (name.to_vec(), inline_value(entries))));
        root.sort();
        w.begin_bucket();
        for (name, header) in &root {
            w.put_element(BUCKET_ELEMENT, name, header).unwrap();
        }
        if !w.leaf.entries.is_empty() || w.children.is_empty() {
            w.flush_leaf().unwrap();
        }
        let root = w.write_branches().unwrap();
        BoltSummary { root, pages: w.next_page }
    };
    let summary = run(BoltSummary::default(), &mut Vec::new());
    let mut out = Vec::new();
    assert_eq!(run(summary, &mut out), summary, "the second pass lays out the same pages");
    assert_eq!(out.len() as u64, summary.bytes());
    out
}

/// An inline bucket's value: a bucket header naming root page 0, then its
/// one leaf page (not padded).
fn inline_value(entries: &Entries) -> Vec<u8> {
    let mut node = Node::default();
    for (k, v) in entries {
        node.push(0, k.clone(), v.clone());
    }
    let body = node_body(LEAF_PAGE, &node);
    let mut leaf = page(0, LEAF_PAGE, entries.len() as u16, &body);
    leaf.truncate(PAGE_HEADER + body.len());
    [0u64.to_le_bytes().as_slice(), &0u64.to_le_bytes(), &leaf].concat()
}

fn write(buckets: &[(&[u8], Entries)]) -> Vec<u8> {
    write_with_inline(buckets, &[])
}

/// Recomputes both meta pages' checksums, so that a patched file gets past
/// them.
pub(in crate::backup) fn reseal(bytes: &mut [u8]) {
    for id in 0..2 {
        let at = id * PAGE_SIZE as usize + PAGE_HEADER;
        if let Some(meta) = bytes.get_mut(at..at + 64) {
            let checksum = fnv1a64(&meta[..56]);
            meta[56..].copy_from_slice(&checksum.to_le_bytes());
        }
    }
}

pub(in crate::backup) fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

pub(in crate::backup) fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// The root bucket's page, as meta page 1 (the newer) names it.
fn root_page(bytes: &[u8]) -> u64 {
    u64_at(bytes, PAGE_SIZE as usize + PAGE_HEADER + 16)
}

/// Where the value of element `i` of the leaf at `page` starts.
fn leaf_value_at(bytes: &[u8], page: u64, i: usize) -> usize {
    let at = (page * PAGE_SIZE) as usize + PAGE_HEADER + i * ELEMENT;
    at + u32_at(bytes, at + 4) as usize + u32_at(bytes, at + 8) as usize
}

pub(in crate::backup) fn open_bytes(bytes: &[u8]) -> Result<Option<BoltFile>, String> {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(bytes).unwrap();
    BoltFile::open(file)
}

/// Every entry of every bucket, as `etcdctl snapshot status` reads them.
fn read_everything(db: &BoltFile) -> Result<Vec<(Vec<u8>, Entries)>, String> {
    let mut all = Vec::new();
    for (name, bucket) in db.buckets()? {
        let mut entries = Vec::new();
        db.for_each_leaf(&bucket, &mut |_, k, v| {
            entries.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        all.push((name, entries));
    }
    Ok(all)
}

fn open_and_read(bytes: &[u8]) -> Result<Vec<(Vec<u8>, Entries)>, String> {
    match open_bytes(bytes)? {
        Some(db) => read_everything(&db),
        None => Ok(Vec::new()),
    }
}

fn read_back(bytes: &[u8], name: &[u8]) -> Option<Entries> {
    open_and_read(bytes).unwrap().into_iter().find(|(n, _)| n == name).map(|(_, entries)| entries)
}

/// `open_and_read` of a file that must be refused: the error, checked to
/// have come without a buffer larger than the file.
fn refused(bytes: &[u8]) -> String {
    probe::reset();
    let refused = open_and_read(bytes).expect_err("a damaged file is refused");
    let (largest, _) = probe::seen();
    assert!(largest <= bytes.len(), "a buffer of {largest} bytes for a {}-byte file", bytes.len());
    refused
}

fn keys(n: u32, value: usize) -> Entries {
    (0..n).map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; value])).collect()
}

#[test]
fn buckets_of_many_pages_and_large_values_read_back_in_order() {
    let many: Vec<_> = (0u32..20_000).map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; (i % 300) as usize])).collect();
    let large = vec![(b"a".to_vec(), vec![7u8; 3 * PAGE_SIZE as usize + 5]), (b"b".to_vec(), vec![1u8; 10])];
    let bytes = write(&[(b"many", many.clone()), (b"empty", vec![]), (b"large", large.clone())]);
    assert_eq!(read_back(&bytes, b"many").unwrap(), many);
    assert_eq!(read_back(&bytes, b"large").unwrap(), large);
    assert_eq!(read_back(&bytes, b"empty").unwrap(), vec![]);
    assert!(read_back(&bytes, b"missing").is_none());
}

#[test]
fn an_inline_bucket_reads_back() {
    let small = vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), vec![])];
    let bytes = write_with_inline(&[(b"k", keys(10, 3))], &[(b"inline", small.clone()), (b"none", vec![])]);
    let db = open_bytes(&bytes).unwrap().unwrap();
    assert!(matches!(db.bucket(b"inline").unwrap(), Some(Bucket::Inline(_))));
    assert_eq!(read_back(&bytes, b"inline").unwrap(), small);
    assert_eq!(read_back(&bytes, b"none").unwrap(), vec![]);
    assert_eq!(read_back(&bytes, b"k").unwrap(), keys(10, 3));
}

#[test]
fn every_page_below_the_high_water_mark_is_reached_exactly_once() {
    let many: Vec<_> = (0u32..5_000).map(|i| (i.to_be_bytes().to_vec(), vec![0u8; 100])).collect();
    let bytes = write(&[(b"k", many), (b"v", vec![(b"x".to_vec(), vec![0u8; 9000])])]);
    let file = open_bytes(&bytes).unwrap().unwrap();
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
        for i in 0..node.header.count {
            let (flags, _, value) = node.element(i).unwrap();
            if node.header.flags & BRANCH_PAGE != 0 {
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
fn a_file_that_is_not_bolt_is_told_apart() {
    assert!(open_bytes(b"concord-backup/1 and more bytes than that").unwrap().is_none());
    assert!(open_bytes(b"").unwrap().is_none());
}

/// The abort of issue 22 (item 8): meta pages claiming 2^33 pages (32 TiB)
/// of a 20 KiB file, with valid checksums, and a page claiming 2^32 - 1
/// overflow pages (within that count): reading the page whole asked for
/// 16 TiB before any read could fail. The page count is now checked
/// against the file's length when it is opened.
#[test]
fn a_meta_page_count_past_the_file_length_is_refused() {
    let mut bytes = write(&[(b"k", keys(3, 1))]);
    assert_eq!(bytes.len(), 5 * PAGE_SIZE as usize);
    let root = root_page(&bytes);
    for id in 0..2 {
        put_u64(&mut bytes, id * PAGE_SIZE as usize + PAGE_HEADER + 40, 1 << 33);
    }
    put_u32(&mut bytes, (root * PAGE_SIZE) as usize + 12, u32::MAX);
    reseal(&mut bytes);
    let refused = refused(&bytes);
    assert_eq!(refused, "bolt meta page 1 claims 8589934592 pages of 4096 bytes, past the end of the 20480-byte file");
}

#[test]
fn a_page_claiming_more_overflow_than_the_file_holds_is_refused() {
    let mut bytes = write(&[(b"k", keys(3, 1))]);
    let root = root_page(&bytes);
    put_u32(&mut bytes, (root * PAGE_SIZE) as usize + 12, 4096);
    let refused = refused(&bytes);
    assert_eq!(
        refused,
        format!("bolt page {root} claims 4096 overflow pages, past the end of the 20480-byte database (5 pages)")
    );
}

#[test]
fn a_root_page_past_the_file_or_on_a_meta_page_is_refused() {
    for (root, expected) in [(5u64, "bolt page 5 is past the file's 5 pages"), (1, "bolt page 1 is a meta page")] {
        let mut bytes = write(&[(b"k", keys(3, 1))]);
        for id in 0..2 {
            put_u64(&mut bytes, id * PAGE_SIZE as usize + PAGE_HEADER + 16, root);
        }
        reseal(&mut bytes);
        let refused = refused(&bytes);
        assert!(refused.starts_with(expected), "{refused}");
    }
}

#[test]
fn a_branch_that_points_back_up_is_refused() {
    let mut bytes = write(&[(b"k", keys(2_000, 100))]);
    let file = open_bytes(&bytes).unwrap().unwrap();
    let Some(Bucket::Pages(root)) = file.bucket(b"k").unwrap() else { panic!("a paged bucket") };
    // Point the root branch's first child at the root itself.
    let at = (root * PAGE_SIZE) as usize + PAGE_HEADER + 8;
    bytes[at..at + 8].copy_from_slice(&root.to_le_bytes());
    assert_eq!(refused(&bytes), format!("bolt page {root} is reached twice"));
    // The walk of one bucket checks on its own too.
    let mut damaged = tempfile::tempfile().unwrap();
    damaged.write_all(&bytes).unwrap();
    let unchecked = BoltFile { file: damaged, root: file.root, pages: file.pages };
    assert_eq!(unchecked.leaves(&Bucket::Pages(root)).unwrap_err(), format!("bolt page {root} is reached twice"));
}

/// Two buckets naming the same pages would have every walk of all buckets
/// read them again (a file of many such buckets: quadratic work).
#[test]
fn a_bucket_sharing_another_buckets_pages_is_refused() {
    let mut bytes = write(&[(b"a", keys(300, 40)), (b"b", keys(10, 1))]);
    let root = root_page(&bytes);
    let a = leaf_value_at(&bytes, root, 0);
    let b = leaf_value_at(&bytes, root, 1);
    let a_root = u64_at(&bytes, a);
    put_u64(&mut bytes, b, a_root);
    assert!(refused(&bytes).ends_with("is reached twice"));
}

/// A page whose overflow covers the next leaf: that leaf would be read
/// twice (overflows over every page: quadratic work).
#[test]
fn a_page_inside_another_pages_overflow_is_refused() {
    let mut bytes = write(&[(b"k", keys(200, 50))]);
    let file = open_bytes(&bytes).unwrap().unwrap();
    let bucket = file.bucket(b"k").unwrap().unwrap();
    let leaves = file.leaves(&bucket).unwrap();
    let [Leaf::Page(first), Leaf::Page(second), ..] = leaves[..] else { panic!("leaves of pages") };
    assert_eq!(second, first + 1);
    put_u32(&mut bytes, (first * PAGE_SIZE) as usize + 12, 1);
    assert_eq!(refused(&bytes), format!("bolt page {second} is reached twice"));
}

/// A leaf whose elements point at the same bytes would have a reader copy
/// more than the page holds (up to 65,535 times over).
#[test]
fn leaf_entries_claiming_more_than_their_page_are_refused() {
    let mut bytes = write(&[(b"k", keys(3, 10))]);
    let file = open_bytes(&bytes).unwrap().unwrap();
    let Some(Bucket::Pages(leaf)) = file.bucket(b"k").unwrap() else { panic!("a paged bucket") };
    // The first value runs over the other two entries and to the end of
    // the page: the second entry is then more than the page holds.
    put_u32(&mut bytes, (leaf * PAGE_SIZE) as usize + PAGE_HEADER + 12, 4096 - 16 - 3 * 16 - 4);
    assert_eq!(
        refused(&bytes),
        format!(
            "bolt page {leaf}: the keys and values of its first 2 elements take 4046 bytes, \
             more than the 4032 it has for them"
        )
    );
}

#[test]
fn an_element_outside_its_page_is_refused() {
    let mut bytes = write(&[(b"k", keys(3, 10))]);
    let file = open_bytes(&bytes).unwrap().unwrap();
    let Some(Bucket::Pages(leaf)) = file.bucket(b"k").unwrap() else { panic!("a paged bucket") };
    let at = (leaf * PAGE_SIZE) as usize;
    put_u32(&mut bytes, at + PAGE_HEADER + 8, u32::MAX);
    assert_eq!(
        refused(&bytes),
        format!("bolt page {leaf}: the 4294967295-byte key of element 0 lies outside its 4096 bytes")
    );
    put_u32(&mut bytes, at + PAGE_HEADER + 8, 4);
    bytes[at + 10..at + 12].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(refused(&bytes), format!("bolt page {leaf} claims 65535 elements, more than its 4096 bytes hold"));
}

/// A valid file with what a reader walks: branches three levels deep (long
/// keys), an overflow value, many small keys, an empty and an inline
/// bucket.
fn varied() -> &'static [u8] {
    static FILE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let deep: Entries = (0u32..60).map(|i| ([&i.to_be_bytes()[..], &[b'k'; 996]].concat(), vec![1])).collect();
        let large = vec![(b"a".to_vec(), vec![7u8; 2 * PAGE_SIZE as usize + 5]), (b"b".to_vec(), vec![1u8; 10])];
        write_with_inline(
            &[(b"deep", deep), (b"many", keys(400, 20)), (b"large", large), (b"empty", vec![])],
            &[(b"inline", keys(3, 2))],
        )
    })
}

/// A change at some offset: a bit flipped, or a little-endian value of 1,
/// 2, 4 or 8 bytes written (cut off at the end of the file).
#[derive(Debug, Clone)]
pub(in crate::backup) enum Mutation {
    Flip { at: usize, bit: u8 },
    Write { at: usize, width: usize, value: u64 },
}

impl Mutation {
    pub(in crate::backup) fn apply(&self, bytes: &mut [u8]) {
        match *self {
            Mutation::Flip { at, bit } => {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << (bit % 8);
                }
            }
            Mutation::Write { at, width, value } => {
                let end = at.saturating_add(width).min(bytes.len());
                if at < end {
                    bytes[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
                }
            }
        }
    }
}

/// Mutations of a file of `len` bytes: anywhere, or (more often) at the
/// fields a reader trusts — page headers, meta fields, elements.
pub(in crate::backup) fn mutation(len: usize) -> impl Strategy<Value = Mutation> {
    let pages = len.div_ceil(PAGE_SIZE as usize).max(1);
    let field = prop_oneof![
        // id, flags, count, overflow
        prop::sample::select(vec![0usize, 8, 10, 12]),
        // the meta page's root, freelist, page count, txid
        prop::sample::select(vec![32usize, 48, 56, 64]),
        // an element's fields (or a branch element's child)
        (0usize..24, prop::sample::select(vec![0usize, 4, 8, 12])).prop_map(|(i, o)| PAGE_HEADER + i * ELEMENT + o),
    ];
    let at = prop_oneof![
        1 => 0..len.max(1),
        3 => (0..pages, field).prop_map(|(page, field)| page * PAGE_SIZE as usize + field),
    ];
    let value = prop_oneof![
        prop::sample::select(vec![0u64, 1, 2, 3, 16, 4096, 0xffff, u64::from(u32::MAX), 1 << 32, u64::MAX]),
        0..pages as u64 + 4,
        any::<u64>(),
    ];
    prop_oneof![
        1 => (at.clone(), any::<u8>()).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        3 => (at, prop::sample::select(vec![1usize, 2, 4, 8]), value)
            .prop_map(|(at, width, value)| Mutation::Write { at, width, value }),
    ]
}

/// Reads everything `bytes` holds, if it is a bolt file, and checks the
/// bounds every read keeps: no buffer larger than the file, and no more
/// read than a few times the file (each page once to check the file, at
/// most twice more to walk every bucket).
fn read_within_bounds(bytes: &[u8]) -> Result<(), TestCaseError> {
    probe::reset();
    let _ = open_and_read(bytes);
    let (largest, read) = probe::seen();
    prop_assert!(largest <= bytes.len(), "a buffer of {} bytes for a {}-byte file", largest, bytes.len());
    prop_assert!(read <= 3 * bytes.len() as u64 + 1024, "{} bytes read of a {}-byte file", read, bytes.len());
    Ok(())
}

/// `default` cases, or as many as `PROPTEST_CASES` says (a longer run).
pub(in crate::backup) fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

/// Up to `len` arbitrary bytes (drawn 8 at a time: far quicker to make).
pub(in crate::backup) fn arbitrary_bytes(len: usize) -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(any::<u64>(), 0..len / 8 + 1), 0..8usize).prop_map(|(words, cut)| {
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.truncate(bytes.len().saturating_sub(cut));
        bytes
    })
}

/// A bolt file as a fuzzer would make it: valid meta pages (mostly naming
/// a root page and page count within the file) before pages that are
/// mostly leaf or branch pages with small counts, overflows, positions and
/// page ids — so that they point at one another (cycles, shared pages,
/// overlaps, bucket headers naming other pages).
fn fuzzed_file() -> impl Strategy<Value = Vec<u8>> {
    // Positions are multiples of 8 and the data small numbers, so that
    // what is read as a page id or bucket header is mostly one of the file's.
    let leaf_element = (0u32..3, 0u32..10, 0u32..24, 0u32..24).prop_map(|(flags, pos, ksize, vsize)| {
        [flags.to_le_bytes(), (pos * 8).to_le_bytes(), ksize.to_le_bytes(), vsize.to_le_bytes()].concat()
    });
    let branch_element = (0u32..10, 0u32..24, 0u64..14).prop_map(|(pos, ksize, child)| {
        [&(pos * 8).to_le_bytes()[..], &ksize.to_le_bytes(), &child.to_le_bytes()].concat()
    });
    let element = prop_oneof![leaf_element, branch_element];
    let node = (
        prop::sample::select(vec![
            LEAF_PAGE,
            LEAF_PAGE,
            BRANCH_PAGE,
            BRANCH_PAGE,
            LEAF_PAGE | BRANCH_PAGE,
            FREELIST_PAGE,
        ]),
        prop_oneof![4 => 0u16..6, 1 => any::<u16>()],
        prop_oneof![6 => Just(0u32), 2 => 0u32..4, 1 => any::<u32>()],
        prop::collection::vec(element, 0..6),
        prop::collection::vec(0u64..14, 0..12),
    )
        .prop_map(|(flags, count, overflow, elements, data)| {
            let data: Vec<u8> = data.iter().flat_map(|d| d.to_le_bytes()).collect();
            let mut bytes = page(0, flags, count, &[elements.concat(), data].concat());
            bytes[12..16].copy_from_slice(&overflow.to_le_bytes());
            bytes
        });
    prop::collection::vec(node, 0..10)
        .prop_flat_map(|pages| {
            let count = 3 + pages.len() as u64;
            let claimed = prop_oneof![4 => Just(count), 1 => 0..count + 2, 1 => any::<u64>()];
            let root = prop_oneof![4 => 3..count.max(4), 1 => any::<u64>()];
            (Just(pages.concat()), claimed, root)
        })
        .prop_map(|(body, pages, root)| {
            let mut bytes = meta_page(0, 0, BoltSummary { root, pages });
            bytes.extend(meta_page(1, 1, BoltSummary { root, pages }));
            bytes.extend(page(FREELIST_PGID, FREELIST_PAGE, 0, &[]));
            bytes.extend(body);
            bytes
        })
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_reader(bytes in arbitrary_bytes(3 * PAGE_SIZE as usize)) {
        read_within_bounds(&bytes)?;
    }

    #[test]
    fn fuzzed_files_never_panic_the_reader(bytes in fuzzed_file()) {
        read_within_bounds(&bytes)?;
    }

    /// A valid file with some fields changed, its meta checksums mostly
    /// recomputed so that the changes get past them.
    #[test]
    fn mutated_valid_files_never_panic_the_reader(
        mutations in prop::collection::vec(mutation(varied().len()), 1..5),
        reseal_meta in prop::bool::weighted(0.8),
    ) {
        let mut bytes = varied().to_vec();
        for m in &mutations {
            m.apply(&mut bytes);
        }
        if reseal_meta {
            reseal(&mut bytes);
        }
        read_within_bounds(&bytes)?;
    }
}
