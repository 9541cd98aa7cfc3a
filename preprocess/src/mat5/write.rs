//! Writes MATLAB v5 MAT-files (little-endian): numeric arrays, strings and struct
//! arrays, with the storage choices MATLAB itself makes available, so the reader is
//! tested on each: zlib-compressed variables (`-v7`), doubles stored as the smallest
//! integer type that holds them exactly, strings as `miUINT16` (MATLAB) or `miUTF8`
//! (scipy), and small data elements for short names.

use std::io::Write;

use super::*;

/// A value to write.
#[derive(Debug, Clone, PartialEq)]
pub enum WValue {
    /// A double array of `dims` (column-major data).
    Numbers { dims: [usize; 2], data: Vec<f64> },
    /// A 1xN char array.
    Text(String),
    /// A struct array of `dims`: `elements[i][f]` is field `f` of element `i`.
    Struct { dims: [usize; 2], fields: Vec<String>, elements: Vec<Vec<WValue>> },
}

impl WValue {
    /// A 1xN row of doubles (a scalar for N = 1).
    pub fn numbers(v: &[f64]) -> WValue {
        WValue::Numbers { dims: [1, v.len()], data: v.to_vec() }
    }

    pub fn text(s: &str) -> WValue {
        WValue::Text(s.to_string())
    }
}

/// How doubles are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NumberStorage {
    /// miDOUBLE (what scipy writes).
    #[default]
    Double,
    /// The smallest of miUINT8, miINT8, miUINT16, miINT16, miUINT32, miINT32 that holds
    /// every value exactly, else miDOUBLE (what MATLAB writes).
    Compact,
}

/// How characters are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextStorage {
    /// miUTF8 (what scipy writes).
    #[default]
    Utf8,
    /// miUINT16, UTF-16 code units (what MATLAB writes).
    Uint16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOptions {
    /// Each variable as one miCOMPRESSED element (MATLAB's default since v7).
    pub compress: bool,
    pub numbers: NumberStorage,
    pub text: TextStorage,
    /// Row vectors as Nx1 (MATLAB's struct arrays often are; scipy writes 1xN).
    pub column_structs: bool,
}

/// The whole file: header and every variable.
pub fn write(vars: &[(&str, WValue)], opts: &WriteOptions) -> Vec<u8> {
    let mut out = Vec::new();
    let mut text = format!("MATLAB 5.0 MAT-file, Platform: rust, Created by: preprocess {}", env!("CARGO_PKG_VERSION"))
        .into_bytes();
    text.resize(116, b' ');
    out.extend_from_slice(&text);
    out.extend_from_slice(&[0u8; 8]); // no subsystem data
    out.extend_from_slice(&0x0100u16.to_le_bytes());
    out.extend_from_slice(b"IM");
    for (name, v) in vars {
        let mut m = Vec::new();
        matrix(&mut m, name, v, opts);
        if opts.compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(&m).expect("writing to memory");
            let z = z.finish().expect("writing to memory");
            tag(&mut out, MI_COMPRESSED, z.len());
            out.extend_from_slice(&z);
        } else {
            out.extend_from_slice(&m);
        }
    }
    out
}

fn tag(out: &mut Vec<u8>, mtype: u32, n: usize) {
    out.extend_from_slice(&mtype.to_le_bytes());
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

/// One data element, padded to 8 bytes; the small format when it fits in 4 bytes.
fn element(out: &mut Vec<u8>, mtype: u32, data: &[u8], small_ok: bool) {
    if small_ok && data.len() <= 4 {
        out.extend_from_slice(&(((data.len() as u32) << 16) | mtype).to_le_bytes());
        let mut b = [0u8; 4];
        b[..data.len()].copy_from_slice(data);
        out.extend_from_slice(&b);
        return;
    }
    tag(out, mtype, data.len());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(8), 0);
}

fn matrix(out: &mut Vec<u8>, name: &str, v: &WValue, opts: &WriteOptions) {
    let mut body = Vec::new();
    let (class, dims) = match v {
        WValue::Numbers { dims, .. } => (MX_DOUBLE, *dims),
        WValue::Text(s) => (MX_CHAR, [1, s.encode_utf16().count()]),
        WValue::Struct { dims, .. } => {
            (MX_STRUCT, if opts.column_structs && dims[0] == 1 { [dims[1], 1] } else { *dims })
        }
    };
    let mut flags = Vec::new();
    flags.extend_from_slice(&(class as u32).to_le_bytes());
    flags.extend_from_slice(&0u32.to_le_bytes());
    element(&mut body, MI_UINT32, &flags, false);
    let d: Vec<u8> = dims.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect();
    element(&mut body, MI_INT32, &d, false);
    element(&mut body, MI_INT8, name.as_bytes(), true);
    match v {
        WValue::Numbers { data, .. } => numbers(&mut body, data, opts.numbers),
        WValue::Text(s) => match opts.text {
            TextStorage::Utf8 => element(&mut body, MI_UTF8, s.as_bytes(), true),
            TextStorage::Uint16 => {
                let b: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
                element(&mut body, MI_UINT16, &b, true)
            }
        },
        WValue::Struct { fields, elements, .. } => {
            let len = fields.iter().map(|f| f.len() + 1).max().unwrap_or(1).max(32);
            element(&mut body, MI_INT32, &(len as i32).to_le_bytes(), true);
            let mut names = vec![0u8; len * fields.len()];
            for (i, f) in fields.iter().enumerate() {
                names[i * len..i * len + f.len()].copy_from_slice(f.as_bytes());
            }
            element(&mut body, MI_INT8, &names, false);
            for el in elements {
                for fv in el {
                    matrix(&mut body, "", fv, opts);
                }
            }
        }
    }
    tag(out, MI_MATRIX, body.len());
    out.extend_from_slice(&body);
}

fn numbers(out: &mut Vec<u8>, data: &[f64], storage: NumberStorage) {
    let fits = |lo: f64, hi: f64| data.iter().all(|&x| x.fract() == 0.0 && x >= lo && x <= hi);
    if storage == NumberStorage::Compact {
        let b: Option<(u32, Vec<u8>)> = if fits(0.0, 255.0) {
            Some((MI_UINT8, data.iter().map(|&x| x as u8).collect()))
        } else if fits(-128.0, 127.0) {
            Some((MI_INT8, data.iter().map(|&x| x as i8 as u8).collect()))
        } else if fits(0.0, 65535.0) {
            Some((MI_UINT16, data.iter().flat_map(|&x| (x as u16).to_le_bytes()).collect()))
        } else if fits(-32768.0, 32767.0) {
            Some((MI_INT16, data.iter().flat_map(|&x| (x as i16).to_le_bytes()).collect()))
        } else if fits(0.0, u32::MAX as f64) {
            Some((MI_UINT32, data.iter().flat_map(|&x| (x as u32).to_le_bytes()).collect()))
        } else if fits(i32::MIN as f64, i32::MAX as f64) {
            Some((MI_INT32, data.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect()))
        } else {
            None
        };
        if let Some((t, b)) = b {
            return element(out, t, &b, true);
        }
    }
    let b: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    element(out, MI_DOUBLE, &b, false);
}
