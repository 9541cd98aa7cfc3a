//! A reader of MATLAB v5 MAT-files (the format of the devkit's `data/meta.mat`), and a
//! small writer for the demo data and the tests ([`write`]).
//!
//! It reads what such files hold: numeric arrays of every class (a double array may be
//! stored as any integer or float data type, as MATLAB does to save space), char arrays
//! (`miUTF8`, `miUINT8`, `miUINT16`, `miUTF16`, `miUTF32`, multi-row char matrices),
//! struct arrays, cell arrays, `miCOMPRESSED` (zlib) elements, the small data element
//! format, and both byte orders. Sparse arrays, objects and function handles are named
//! and refused; MATLAB v7.3 files (HDF5) are recognised and refused.
//!
//! ```
//! use preprocess::mat5::{self, write::{WValue, WriteOptions}};
//! let bytes = mat5::write::write(&[("x", WValue::numbers(&[1.0, 2.5]))], &WriteOptions::default());
//! let v = mat5::read_variable(&bytes, "x").unwrap();
//! assert_eq!(v.numbers().unwrap(), &[1.0, 2.5]);
//! ```

pub mod write;

use std::borrow::Cow;
use std::io::Read;

/// A variable's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any numeric or logical class, converted to f64 (column-major).
    Numeric {
        dims: Vec<usize>,
        data: Vec<f64>,
    },
    /// A char array: one string per row.
    Char {
        dims: Vec<usize>,
        rows: Vec<String>,
    },
    /// A struct array: `elements[i][f]` is field `fields[f]` of element `i` (column-major).
    Struct {
        dims: Vec<usize>,
        fields: Vec<String>,
        elements: Vec<Vec<Value>>,
    },
    Cell {
        dims: Vec<usize>,
        elements: Vec<Value>,
    },
}

impl Value {
    pub fn numbers(&self) -> Option<&[f64]> {
        match self {
            Value::Numeric { data, .. } => Some(data),
            _ => None,
        }
    }

    /// The one number of a scalar.
    pub fn scalar(&self) -> Option<f64> {
        match self.numbers()? {
            [x] => Some(*x),
            _ => None,
        }
    }

    /// The text of a char array (rows joined by newlines; "" for an empty one).
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Char { rows, .. } => Some(rows.join("\n")),
            // MATLAB writes an empty string as an empty double array ([]).
            Value::Numeric { data, .. } if data.is_empty() => Some(String::new()),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Value::Numeric { .. } => "numeric",
            Value::Char { .. } => "char",
            Value::Struct { .. } => "struct",
            Value::Cell { .. } => "cell",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MatError {
    #[error("not a MATLAB v5 MAT-file: {0}")]
    NotV5(String),
    #[error("malformed MAT-file at byte {offset}: {what}")]
    Malformed { offset: usize, what: String },
    #[error("{0} (this reader handles numeric, char, struct and cell arrays)")]
    Unsupported(String),
    #[error("no variable named {0:?} (the file holds: {1})")]
    Missing(String, String),
}

// Data types (MAT-File Format, table 1-1).
pub(crate) const MI_INT8: u32 = 1;
pub(crate) const MI_UINT8: u32 = 2;
pub(crate) const MI_INT16: u32 = 3;
pub(crate) const MI_UINT16: u32 = 4;
pub(crate) const MI_INT32: u32 = 5;
pub(crate) const MI_UINT32: u32 = 6;
pub(crate) const MI_SINGLE: u32 = 7;
pub(crate) const MI_DOUBLE: u32 = 9;
pub(crate) const MI_INT64: u32 = 12;
pub(crate) const MI_UINT64: u32 = 13;
pub(crate) const MI_MATRIX: u32 = 14;
pub(crate) const MI_COMPRESSED: u32 = 15;
pub(crate) const MI_UTF8: u32 = 16;
pub(crate) const MI_UTF16: u32 = 17;
pub(crate) const MI_UTF32: u32 = 18;

// Array classes.
pub(crate) const MX_CELL: u8 = 1;
pub(crate) const MX_STRUCT: u8 = 2;
pub(crate) const MX_CHAR: u8 = 4;
pub(crate) const MX_DOUBLE: u8 = 6;

/// Every variable of the file, in file order.
pub fn read_variables(bytes: &[u8]) -> Result<Vec<(String, Value)>, MatError> {
    let swap = header(bytes)?;
    let mut r = Reader { data: bytes, pos: 128, base: 0, swap };
    let mut out = Vec::new();
    while r.pos + 8 <= r.data.len() {
        let el = r.element()?;
        out.push(matrix(&el, swap)?);
    }
    Ok(out)
}

/// The variable `name`.
pub fn read_variable(bytes: &[u8], name: &str) -> Result<Value, MatError> {
    let vars = read_variables(bytes)?;
    let names: Vec<String> = vars.iter().map(|(n, _)| n.clone()).collect();
    vars.into_iter().find(|(n, _)| n == name).map(|(_, v)| v).ok_or_else(|| {
        MatError::Missing(name.into(), if names.is_empty() { "nothing".into() } else { names.join(", ") })
    })
}

/// Checks the 128-byte header; returns whether the data is byte-swapped.
fn header(bytes: &[u8]) -> Result<bool, MatError> {
    if bytes.len() >= 8 && bytes[..4] == *b"\x89HDF" || bytes.get(512..516) == Some(b"\x89HDF") {
        return Err(MatError::NotV5(
            "it is a MATLAB v7.3 (HDF5) file; save it with -v7 (the devkit's meta.mat is v5)".into(),
        ));
    }
    if bytes.len() < 128 {
        return Err(MatError::NotV5(format!("{} bytes, shorter than the 128-byte header", bytes.len())));
    }
    match &bytes[126..128] {
        b"IM" => Ok(false),
        b"MI" => Ok(true),
        _ => Err(MatError::NotV5("no endian indicator (IM/MI) at bytes 126..128 (a v4 file?)".into())),
    }
}

/// One data element: its type and its bytes.
struct Element<'a> {
    mtype: u32,
    data: Cow<'a, [u8]>,
    /// Absolute offset of the data, for messages (of the element holding it, when
    /// decompressed).
    offset: usize,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Absolute offset of `data[0]` (for messages).
    base: usize,
    swap: bool,
}

impl<'a> Reader<'a> {
    fn malformed(&self, what: impl Into<String>) -> MatError {
        MatError::Malformed { offset: self.base + self.pos, what: what.into() }
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(at..at + 4)?.try_into().ok()?;
        Some(if self.swap { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    fn element(&mut self) -> Result<Element<'a>, MatError> {
        let first = self.u32_at(self.pos).ok_or_else(|| self.malformed("the file ends inside a tag"))?;
        if first >> 16 != 0 {
            // Small data element: type and size in one word, up to 4 bytes of data.
            let (mtype, n) = (first & 0xffff, (first >> 16) as usize);
            if n > 4 {
                return Err(self.malformed(format!("small data element of {n} bytes (at most 4)")));
            }
            let start = self.pos + 4;
            let data = self.data.get(start..start + 4).ok_or_else(|| self.malformed("the file ends inside a tag"))?;
            self.pos += 8;
            return Ok(Element { mtype, data: Cow::Borrowed(&data[..n]), offset: self.base + start });
        }
        let n = self.u32_at(self.pos + 4).ok_or_else(|| self.malformed("the file ends inside a tag"))? as usize;
        let start = self.pos + 8;
        let data = self.data.get(start..start.saturating_add(n)).ok_or_else(|| {
            self.malformed(format!("element of type {first} claims {n} bytes; {} are left", self.data.len() - start))
        })?;
        if first == MI_COMPRESSED {
            // zlib data holding one element; no padding after it.
            let offset = self.base + start;
            self.pos = start + n;
            let mut inflated = Vec::new();
            flate2::read::ZlibDecoder::new(data).read_to_end(&mut inflated).map_err(|e| MatError::Malformed {
                offset,
                what: format!("compressed element does not inflate: {e}"),
            })?;
            let mut inner = Reader { data: &inflated, pos: 0, base: offset, swap: self.swap };
            let el = inner.element()?;
            return Ok(Element { mtype: el.mtype, data: Cow::Owned(el.data.into_owned()), offset });
        }
        self.pos = (start + n).next_multiple_of(8).min(self.data.len());
        Ok(Element { mtype: first, data: Cow::Borrowed(data), offset: self.base + start })
    }

    fn expect(&mut self, what: &str) -> Result<Element<'a>, MatError> {
        if self.pos >= self.data.len() {
            return Err(self.malformed(format!("the array ends before its {what}")));
        }
        self.element()
    }
}

/// Parses a miMATRIX element into its name and value.
fn matrix(el: &Element, swap: bool) -> Result<(String, Value), MatError> {
    let bad = |what: String| MatError::Malformed { offset: el.offset, what };
    if el.mtype != MI_MATRIX {
        return Err(bad(format!("expected an array (miMATRIX), found data type {}", el.mtype)));
    }
    if el.data.is_empty() {
        // MATLAB writes empty fields as a zero-byte miMATRIX.
        return Ok((String::new(), Value::Numeric { dims: vec![0, 0], data: Vec::new() }));
    }
    let mut r = Reader { data: &el.data, pos: 0, base: el.offset, swap };
    let flags = r.expect("array flags")?;
    let words = ints(flags.mtype, &flags.data, swap).map_err(|w| bad(format!("array flags: {w}")))?;
    let class = words.first().copied().unwrap_or(0) as u32 as u8;
    let dims_el = r.expect("dimensions")?;
    let dims: Vec<usize> = ints(dims_el.mtype, &dims_el.data, swap)
        .map_err(|w| bad(format!("dimensions: {w}")))?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}"))))
        .collect::<Result<_, _>>()?;
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    // Every element takes at least 8 bytes: a count beyond that is a damaged file (and
    // must not reserve memory).
    let room = el.data.len() / 8 + 1;
    let name_el = r.expect("name")?;
    let name = String::from_utf8_lossy(&name_el.data).trim_end_matches('\0').to_string();
    let value = match class {
        MX_CELL => {
            let mut elements = Vec::with_capacity(count.min(room));
            for _ in 0..count {
                elements.push(matrix(&r.expect("cell elements")?, swap)?.1);
            }
            Value::Cell { dims, elements }
        }
        MX_STRUCT => {
            let len_el = r.expect("field name length")?;
            let len = ints(len_el.mtype, &len_el.data, swap)
                .map_err(|w| bad(format!("field name length: {w}")))?
                .first()
                .copied()
                .unwrap_or(0);
            let names_el = r.expect("field names")?;
            let fields: Vec<String> = if len <= 0 {
                Vec::new()
            } else {
                names_el
                    .data
                    .chunks(len as usize)
                    .map(|c| String::from_utf8_lossy(c).trim_end_matches('\0').to_string())
                    .collect()
            };
            if count > room {
                return Err(bad(format!("struct array {dims:?} cannot fit in {} bytes", el.data.len())));
            }
            let mut elements = Vec::with_capacity(count.min(room));
            for _ in 0..count {
                let mut row = Vec::with_capacity(fields.len());
                for _ in &fields {
                    row.push(matrix(&r.expect("struct fields")?, swap)?.1);
                }
                elements.push(row);
            }
            Value::Struct { dims, fields, elements }
        }
        MX_CHAR => {
            let d = if count == 0 && r.pos >= r.data.len() {
                Element { mtype: MI_UINT16, data: Cow::Borrowed(&[]), offset: el.offset }
            } else {
                r.expect("characters")?
            };
            let chars = chars(d.mtype, &d.data, swap).map_err(|w| bad(format!("characters: {w}")))?;
            if chars.len() != count {
                return Err(bad(format!("char array {dims:?} holds {} characters", chars.len())));
            }
            // Column-major: row i is chars[i], chars[i + rows], ...
            let rows_n = dims.first().copied().unwrap_or(0);
            let rows = if count == 0 {
                Vec::new()
            } else {
                (0..rows_n).map(|i| chars.iter().skip(i).step_by(rows_n).collect()).collect()
            };
            Value::Char { dims, rows }
        }
        6..=15 => {
            let data = if count == 0 && r.pos >= r.data.len() {
                Vec::new()
            } else {
                let d = r.expect("real part")?;
                numbers(d.mtype, &d.data, swap).map_err(|w| bad(format!("numbers: {w}")))?
            };
            if data.len() != count {
                return Err(bad(format!("numeric array {dims:?} holds {} numbers", data.len())));
            }
            Value::Numeric { dims, data }
        }
        3 => return Err(MatError::Unsupported(format!("variable {name:?} is a MATLAB object"))),
        5 => return Err(MatError::Unsupported(format!("variable {name:?} is a sparse array"))),
        c => return Err(MatError::Unsupported(format!("variable {name:?} has array class {c}"))),
    };
    Ok((name, value))
}

fn fixed<const N: usize>(data: &[u8], swap: bool) -> Result<Vec<[u8; N]>, String> {
    if !data.len().is_multiple_of(N) {
        return Err(format!("{} bytes is not a whole number of {N}-byte values", data.len()));
    }
    Ok(data
        .chunks_exact(N)
        .map(|c| {
            let mut b: [u8; N] = c.try_into().expect("chunk of N");
            if swap {
                b.reverse();
            }
            b
        })
        .collect())
}

/// Any numeric data type, as f64 (little-endian after `fixed`).
fn numbers(mtype: u32, data: &[u8], swap: bool) -> Result<Vec<f64>, String> {
    Ok(match mtype {
        MI_INT8 => data.iter().map(|&b| b as i8 as f64).collect(),
        MI_UINT8 => data.iter().map(|&b| b as f64).collect(),
        MI_INT16 => fixed::<2>(data, swap)?.into_iter().map(|b| i16::from_le_bytes(b) as f64).collect(),
        MI_UINT16 => fixed::<2>(data, swap)?.into_iter().map(|b| u16::from_le_bytes(b) as f64).collect(),
        MI_INT32 => fixed::<4>(data, swap)?.into_iter().map(|b| i32::from_le_bytes(b) as f64).collect(),
        MI_UINT32 => fixed::<4>(data, swap)?.into_iter().map(|b| u32::from_le_bytes(b) as f64).collect(),
        MI_SINGLE => fixed::<4>(data, swap)?.into_iter().map(|b| f32::from_le_bytes(b) as f64).collect(),
        MI_DOUBLE => fixed::<8>(data, swap)?.into_iter().map(f64::from_le_bytes).collect(),
        MI_INT64 => fixed::<8>(data, swap)?.into_iter().map(|b| i64::from_le_bytes(b) as f64).collect(),
        MI_UINT64 => fixed::<8>(data, swap)?.into_iter().map(|b| u64::from_le_bytes(b) as f64).collect(),
        t => return Err(format!("data type {t} is not numeric")),
    })
}

/// Integer data (flags, dimensions, lengths).
fn ints(mtype: u32, data: &[u8], swap: bool) -> Result<Vec<i64>, String> {
    numbers(mtype, data, swap).map(|v| v.into_iter().map(|x| x as i64).collect())
}

/// Character data in any of the encodings MATLAB and scipy write.
fn chars(mtype: u32, data: &[u8], swap: bool) -> Result<Vec<char>, String> {
    Ok(match mtype {
        MI_UTF8 => String::from_utf8_lossy(data).chars().collect(),
        // 8-bit characters: Latin-1, one per byte.
        MI_UINT8 | MI_INT8 => data.iter().map(|&b| b as char).collect(),
        MI_UINT16 | MI_UTF16 | MI_INT16 => {
            let units: Vec<u16> = fixed::<2>(data, swap)?.into_iter().map(u16::from_le_bytes).collect();
            char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
        }
        MI_UTF32 | MI_UINT32 | MI_INT32 => fixed::<4>(data, swap)?
            .into_iter()
            .map(|b| char::from_u32(u32::from_le_bytes(b)).unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
        t => return Err(format!("data type {t} is not text")),
    })
}
