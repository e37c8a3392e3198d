//! Lox values, NaN-boxed into one word, and how numbers print.
//!
//! A value is a 64-bit word: a number is any double whose quiet-NaN bits are
//! not all set; `nil`, `false` and `true` are quiet NaNs with payload 1, 2
//! and 3; an object is a quiet NaN with the sign bit set and the object's
//! address (48 bits, 8-aligned) in the payload. Values are stored this way
//! on the stack and in heap objects, so a value slot holding an object is
//! visited by decoding it into an [`ObjectRef`] and encoding the collector's
//! answer back (see [`visit_value`]).

use std::io::{self, Write};

use rtmem_gc::{ObjectRef, SlotVisitor};

use crate::object::{self, closure_function, function_name, read_ref, string_bytes};

const SIGN_BIT: u64 = 1 << 63;
const QNAN: u64 = 0x7ffc_0000_0000_0000;
const TAG_NIL: u64 = 1;
const TAG_FALSE: u64 = 2;
const TAG_TRUE: u64 = 3;
const OBJECT_BITS: u64 = SIGN_BIT | QNAN;

/// A Lox value: nil, a boolean, a number or an object reference.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct Value(u64);

impl Value {
    pub(crate) const NIL: Value = Value(QNAN | TAG_NIL);
    pub(crate) const FALSE: Value = Value(QNAN | TAG_FALSE);
    pub(crate) const TRUE: Value = Value(QNAN | TAG_TRUE);

    #[inline(always)]
    pub(crate) fn number(n: f64) -> Value {
        Value(n.to_bits())
    }

    #[inline(always)]
    pub(crate) fn bool(b: bool) -> Value {
        if b { Value::TRUE } else { Value::FALSE }
    }

    #[inline(always)]
    pub(crate) fn object(object: ObjectRef) -> Value {
        Value(OBJECT_BITS | object.addr() as u64)
    }

    #[inline(always)]
    pub(crate) fn is_number(self) -> bool {
        self.0 & QNAN != QNAN
    }

    /// The number (meaningful only if [`is_number`](Self::is_number)).
    #[inline(always)]
    pub(crate) fn as_number(self) -> f64 {
        f64::from_bits(self.0)
    }

    #[inline(always)]
    pub(crate) fn is_falsey(self) -> bool {
        self == Value::NIL || self == Value::FALSE
    }

    #[inline(always)]
    pub(crate) fn is_object(self) -> bool {
        self.0 & OBJECT_BITS == OBJECT_BITS
    }

    /// The object this value references, if it is an object.
    #[inline(always)]
    pub(crate) fn as_object(self) -> Option<ObjectRef> {
        if self.is_object() {
            let addr = (self.0 & !OBJECT_BITS) as usize;
            debug_assert!(addr.is_multiple_of(8), "{addr:#x} is not an object address");
            // SAFETY: `Option<ObjectRef>` is one word with null as `None`
            // (`ObjectRef` is a transparent `NonZeroUsize`), and an object
            // value's payload is the address of an object (8-aligned): it
            // was made by `Value::object`.
            unsafe { std::mem::transmute::<usize, Option<ObjectRef>>(addr) }
        } else {
            None
        }
    }

    /// The object of a value known to be an object.
    #[inline(always)]
    pub(crate) fn to_object(self) -> ObjectRef {
        match self.as_object() {
            Some(object) => object,
            None => not_an_object(self),
        }
    }

    /// Lox `==`: numbers compare as doubles (so NaN is not equal to itself),
    /// everything else by identity (strings are interned).
    #[inline(always)]
    pub(crate) fn equals(self, other: Value) -> bool {
        if self.is_number() && other.is_number() {
            self.as_number() == other.as_number()
        } else {
            self == other
        }
    }
}

#[cold]
#[inline(never)]
fn not_an_object(v: Value) -> ! {
    panic!("the value {:#x} is not an object", v.0)
}

impl From<Option<ObjectRef>> for Value {
    fn from(object: Option<ObjectRef>) -> Value {
        object.map_or(Value::NIL, Value::object)
    }
}

/// Visits the value in `slot` if it holds an object, storing the object's
/// new address back only if the collector moved it (a concurrent marker
/// must not write over a store the mutator made meanwhile).
///
/// # Safety
/// `slot` points to a value slot of a live object or of a root.
#[inline]
pub(crate) unsafe fn visit_value(slot: *mut Value, visitor: &mut impl SlotVisitor) {
    // SAFETY: the caller passes a valid value slot.
    let old = unsafe { slot.read() };
    if let Some(object) = old.as_object() {
        let mut temp = Some(object);
        visitor.visit(&mut temp);
        if temp != Some(object) {
            // SAFETY: as above.
            unsafe { slot.write(Value::from(temp)) };
        }
    }
}

/// Writes `v` as clox's `printValue` does.
pub(crate) fn write_value(out: &mut impl Write, v: Value) -> io::Result<()> {
    if v.is_number() {
        return write_number(out, v.as_number());
    }
    let Some(o) = v.as_object() else {
        return out.write_all(match v {
            Value::NIL => b"nil",
            Value::TRUE => b"true",
            _ => b"false",
        });
    };
    match object::tag(o) {
        object::STRING => out.write_all(string_bytes(o)),
        object::FUNCTION => write_function(out, o),
        object::CLOSURE => write_function(out, closure_function(o)),
        object::BOUND_METHOD => {
            let method = read_ref(o, object::bound::METHOD).expect("a bound method has a method");
            write_function(out, closure_function(method))
        }
        object::CLASS => write_name(out, read_ref(o, object::class::NAME)),
        object::INSTANCE => {
            let class = read_ref(o, object::instance::CLASS).expect("an instance has a class");
            write_name(out, read_ref(class, object::class::NAME))?;
            out.write_all(b" instance")
        }
        object::NATIVE => out.write_all(b"<native fn>"),
        object::UPVALUE => out.write_all(b"upvalue"),
        t => write!(out, "<internal object {t}>"),
    }
}

fn write_function(out: &mut impl Write, function: ObjectRef) -> io::Result<()> {
    match function_name(function) {
        None => out.write_all(b"<script>"),
        Some(name) => {
            out.write_all(b"<fn ")?;
            out.write_all(string_bytes(name))?;
            out.write_all(b">")
        }
    }
}

fn write_name(out: &mut impl Write, name: Option<ObjectRef>) -> io::Result<()> {
    out.write_all(name.map_or(&b""[..], string_bytes))
}

/// Writes `n` as C's `printf("%g", n)` does (six significant digits,
/// trailing zeros dropped, exponent form outside `1e-4 <= |n| < 1e6`;
/// `nan`, `-nan`, `inf`, `-inf`, `-0`).
pub(crate) fn write_number(out: &mut impl Write, n: f64) -> io::Result<()> {
    if n.is_nan() {
        return out.write_all(if n.is_sign_negative() {
            b"-nan"
        } else {
            b"nan"
        });
    }
    if n.is_infinite() {
        return out.write_all(if n < 0.0 { b"-inf" } else { b"inf" });
    }
    if n == 0.0 {
        return out.write_all(if n.is_sign_negative() { b"-0" } else { b"0" });
    }
    if n.fract() == 0.0 && n.abs() < 1e6 {
        return write!(out, "{}", n as i64);
    }
    // The exponent after rounding to six significant digits decides the form.
    let sci = format!("{n:.5e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponents are integers");
    if (-4..6).contains(&exp) {
        let fixed = format!("{:.*}", (5 - exp) as usize, n);
        out.write_all(trim_zeros(&fixed).as_bytes())
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        write!(out, "{}e{sign}{:02}", trim_zeros(mantissa), exp.abs())
    }
}

/// Drops trailing zeros after a decimal point, and the point if nothing follows.
fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(n: f64) -> String {
        let mut out = Vec::new();
        write_number(&mut out, n).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_print_like_printf_g() {
        // The right-hand sides are glibc's printf("%g") output.
        let cases = [
            (0.1 + 0.2, "0.3"),
            (123456789.0, "1.23457e+08"),
            (1e21, "1e+21"),
            (1234565.0, "1.23456e+06"),
            (1234575.0, "1.23458e+06"),
            (0.5, "0.5"),
            (2.5, "2.5"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123456.5, "123456"),
            (999999.5, "1e+06"),
            (1e100, "1e+100"),
            (-0.0, "-0"),
            (1.0 / 3.0, "0.333333"),
            (100.0, "100"),
            (-100.0, "-100"),
            (1e6, "1e+06"),
            (0.00001234, "1.234e-05"),
            (12345678912345678.0, "1.23457e+16"),
            (0.000123456789, "0.000123457"),
            (5e-324, "4.94066e-324"),
            (f64::MAX, "1.79769e+308"),
            (2.0 / 3.0 * 1e-10, "6.66667e-11"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (n, want) in cases {
            assert_eq!(g(n), want, "printing {n:e}");
        }
        // x86's default NaN (from 0/0) has the sign bit set: glibc prints -nan.
        assert_eq!(g(f64::from_bits(0xfff8_0000_0000_0000)), "-nan");
        assert_eq!(g(f64::NAN), "nan");
    }

    #[test]
    fn values_round_trip() {
        let r = ObjectRef::from_addr(0x7f00_1234_5678).unwrap();
        let v = Value::object(r);
        assert!(v.is_object() && !v.is_number() && v != Value::NIL);
        assert_eq!(v.as_object(), Some(r));
        assert!(Value::number(f64::from_bits(0xfff8_0000_0000_0000)).is_number());
        assert!(Value::NIL.is_falsey() && Value::FALSE.is_falsey());
        assert!(!Value::number(0.0).is_falsey());
        assert!(!Value::number(f64::NAN).equals(Value::number(f64::NAN)));
        assert!(Value::number(-0.0).equals(Value::number(0.0)));
    }
}
