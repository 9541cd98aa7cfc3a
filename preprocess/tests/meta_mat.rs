//! The MAT-file reader on files written by scipy (committed fixtures, made by
//! `tests/data/make_meta_fixtures.py` with scipy 1.17.1, compressed and not) and on files
//! built with the storage choices MATLAB makes (doubles as miUINT8/miUINT16, UTF-16
//! text, miCOMPRESSED, small data elements, Nx1 struct arrays), plus bad files.

use preprocess::archive::devkit::{self, Synset};
use preprocess::mat5::write::{NumberStorage, TextStorage, WValue, WriteOptions};
use preprocess::mat5::{self, MatError, Value};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)).unwrap()
}

fn leaf(id: u32, wnid: &str, words: &str) -> Synset {
    Synset { id, wnid: wnid.into(), words: words.into(), num_children: 0 }
}

/// What make_meta_fixtures.py wrote:
/// ```python
/// rows = [(1, "n03000003", "third, drei", ..., 0, ...), (2, "n01000001", "first, eins", ...),
///         (3, "n02000002", "café, Ångström", ...), (4, "n09000009", "inner", ..., 2, [[1, 2]]),
///         (5, "n09900099", "root", ..., 2, [[4, 3]])]
/// ```
fn expected() -> Vec<Synset> {
    vec![
        leaf(1, "n03000003", "third, drei"),
        leaf(2, "n01000001", "first, eins"),
        leaf(3, "n02000002", "café, Ångström"),
        Synset { id: 4, wnid: "n09000009".into(), words: "inner".into(), num_children: 2 },
        Synset { id: 5, wnid: "n09900099".into(), words: "root".into(), num_children: 2 },
    ]
}

#[test]
fn scipy_written_meta_mat_uncompressed_and_compressed() {
    for name in ["meta_scipy.mat", "meta_scipy_compressed.mat"] {
        let bytes = fixture(name);
        let s = devkit::synsets(&bytes).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(s, expected(), "{name}");
        let dk = devkit::Devkit { synsets: s, ground_truth: None };
        let ids = dk.id_to_wnid();
        assert_eq!(ids.len(), 3, "{name}: only the leaves are classes");
        assert_eq!((ids[&1].as_str(), ids[&2].as_str(), ids[&3].as_str()), ("n03000003", "n01000001", "n02000002"));
        // The children of an internal node, as scipy wrote them (1x2 doubles).
        let Value::Struct { fields, elements, .. } = mat5::read_variable(&bytes, "synsets").unwrap() else {
            panic!("not a struct")
        };
        let children = fields.iter().position(|f| f == "children").unwrap();
        assert_eq!(elements[3][children].numbers().unwrap(), &[1.0, 2.0]);
        assert_eq!(elements[0][children].numbers().unwrap(), &[] as &[f64]);
    }
}

fn table() -> WValue {
    let rows: Vec<Vec<WValue>> = expected()
        .iter()
        .map(|s| {
            vec![
                WValue::numbers(&[s.id as f64]),
                WValue::text(&s.wnid),
                WValue::text(&s.words),
                WValue::numbers(&[s.num_children as f64]),
                // Values that need miUINT16 (1000, 60000) and a double (0.5) in Compact.
                WValue::numbers(&[1000.0, 60000.0, s.id as f64]),
                WValue::numbers(&[0.5, -3.0]),
            ]
        })
        .collect();
    WValue::Struct {
        dims: [1, rows.len()],
        fields: ["ILSVRC2012_ID", "WNID", "words", "num_children", "wide", "fraction"].map(String::from).to_vec(),
        elements: rows,
    }
}

#[test]
fn every_storage_choice_reads_back() {
    for compress in [false, true] {
        for numbers in [NumberStorage::Double, NumberStorage::Compact] {
            for text in [TextStorage::Utf8, TextStorage::Uint16] {
                for column_structs in [false, true] {
                    let opts = WriteOptions { compress, numbers, text, column_structs };
                    let bytes = mat5::write::write(&[("other", WValue::numbers(&[7.0])), ("synsets", table())], &opts);
                    assert_eq!(devkit::synsets(&bytes).unwrap(), expected(), "{opts:?}");
                    let Value::Struct { dims, elements, .. } = mat5::read_variable(&bytes, "synsets").unwrap() else {
                        panic!()
                    };
                    assert_eq!(dims, if column_structs { vec![5, 1] } else { vec![1, 5] });
                    assert_eq!(elements[1][4].numbers().unwrap(), &[1000.0, 60000.0, 2.0], "{opts:?}");
                    assert_eq!(elements[1][5].numbers().unwrap(), &[0.5, -3.0], "{opts:?}");
                    assert_eq!(mat5::read_variable(&bytes, "other").unwrap().scalar(), Some(7.0));
                }
            }
        }
    }
}

/// The element types the compact storage picks: MATLAB's choices, checked on the bytes.
#[test]
fn compact_storage_uses_small_integer_types() {
    let opts = WriteOptions { numbers: NumberStorage::Compact, text: TextStorage::Uint16, ..Default::default() };
    let bytes = mat5::write::write(&[("a", WValue::numbers(&[3.0, 200.0])), ("b", WValue::numbers(&[1000.0]))], &opts);
    // After the 128-byte header: a's miMATRIX; its real part is a small miUINT8 element
    // (type 2, 2 bytes: 0x00020002 little-endian) holding 3, 200.
    let find = |pat: &[u8]| bytes.windows(pat.len()).any(|w| w == pat);
    assert!(find(&[2, 0, 2, 0, 3, 200, 0, 0]), "miUINT8 small element");
    assert!(find(&[4, 0, 2, 0, 0xe8, 0x03, 0, 0]), "miUINT16 small element (1000)");
    assert_eq!(mat5::read_variable(&bytes, "a").unwrap().numbers().unwrap(), &[3.0, 200.0]);
}

/// A 2x3 char matrix in miUTF8, column-major, built byte by byte.
#[test]
fn hand_built_char_matrix_and_big_endian() {
    let mut f = vec![b' '; 116];
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&0x0100u16.to_le_bytes());
    f.extend_from_slice(b"IM");
    let mut body = Vec::new();
    let el = |out: &mut Vec<u8>, t: u32, d: &[u8]| {
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&(d.len() as u32).to_le_bytes());
        out.extend_from_slice(d);
        out.resize(out.len().next_multiple_of(8), 0);
    };
    el(&mut body, 6, &[4, 0, 0, 0, 0, 0, 0, 0]); // mxCHAR_CLASS
    el(&mut body, 5, &[2, 0, 0, 0, 3, 0, 0, 0]); // 2x3
    el(&mut body, 1, b"m");
    el(&mut body, 16, b"adbecf"); // rows "abc", "def", column-major
    el(&mut f, 14, &body);
    let v = mat5::read_variable(&f, "m").unwrap();
    assert_eq!(v, Value::Char { dims: vec![2, 3], rows: vec!["abc".into(), "def".into()] });

    // The same numbers file written big-endian ("MI"): every word swapped.
    let mut be = vec![b' '; 116];
    be.extend_from_slice(&[0; 8]);
    be.extend_from_slice(&0x0100u16.to_be_bytes());
    be.extend_from_slice(b"MI");
    let bel = |out: &mut Vec<u8>, t: u32, d: &[u8]| {
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&(d.len() as u32).to_be_bytes());
        out.extend_from_slice(d);
        out.resize(out.len().next_multiple_of(8), 0);
    };
    let mut body = Vec::new();
    bel(&mut body, 6, &[0, 0, 0, 6, 0, 0, 0, 0]); // mxDOUBLE_CLASS
    bel(&mut body, 5, &[0, 0, 0, 1, 0, 0, 0, 2]); // 1x2
    bel(&mut body, 1, b"x");
    bel(&mut body, 4, &[0x03, 0xe8, 0, 7]); // miUINT16: 1000, 7
    bel(&mut be, 14, &body);
    assert_eq!(mat5::read_variable(&be, "x").unwrap().numbers().unwrap(), &[1000.0, 7.0]);
}

#[test]
fn bad_files_are_errors_not_panics() {
    for name in ["meta_scipy.mat", "meta_scipy_compressed.mat"] {
        let bytes = fixture(name);
        // Every truncation, and a flipped byte at every position of the compressed one.
        for n in 0..bytes.len() {
            let _ = devkit::synsets(&bytes[..n]);
            if name.contains("compressed") {
                let mut b = bytes.clone();
                b[n] ^= 0x5a;
                let _ = devkit::synsets(&b);
            }
        }
        assert!(devkit::synsets(&bytes[..bytes.len() - 9]).is_err());
    }
    let mut hdf5 = vec![0u8; 600];
    hdf5[512..516].copy_from_slice(b"\x89HDF");
    let e = mat5::read_variables(&hdf5).unwrap_err();
    assert!(matches!(e, MatError::NotV5(_)) && e.to_string().contains("v7.3"), "{e}");
    let e =
        devkit::synsets(&mat5::write::write(&[("x", WValue::numbers(&[1.0]))], &WriteOptions::default())).unwrap_err();
    assert!(format!("{e:#}").contains("no variable named \"synsets\""), "{e:#}");
}
