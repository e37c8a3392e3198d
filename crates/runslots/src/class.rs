//! Size classes: which slot size serves a request of `size` bytes.
//!
//! Slots are multiples of 8 bytes. Up to 128 bytes every multiple of 8 is a
//! class; from 128 to 256 the step is 16. A request therefore wastes at most
//! 7 bytes up to 128 and at most 15 bytes above, which is less than one
//! eighth (12.5 %) of its slot for every size above 56 bytes; below that the
//! waste is only the rounding to 8 bytes that alignment requires anyway.

/// The largest request served.
pub const MAX_SIZE: usize = 256;

/// The number of size classes.
pub const NUM_CLASSES: usize = 24;

/// The slot size of each class, smallest first.
pub const CLASS_SIZES: [usize; NUM_CLASSES] = [
    8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128, //
    144, 160, 176, 192, 208, 224, 240, 256,
];

/// `CLASS_OF[(size + 7) / 8]` is the class of `size` for `1 <= size <= MAX_SIZE`.
static CLASS_OF: [u8; MAX_SIZE / 8 + 1] = {
    let mut table = [0u8; MAX_SIZE / 8 + 1];
    let mut words = 1;
    while words < table.len() {
        let mut class = 0;
        while CLASS_SIZES[class] < words * 8 {
            class += 1;
        }
        table[words] = class as u8;
        words += 1;
    }
    table
};

/// The class serving a request of `size` bytes, or `None` if `size` is 0 or
/// larger than [`MAX_SIZE`].
#[inline(always)]
pub(crate) fn class_of(size: usize) -> Option<usize> {
    if size.wrapping_sub(1) < MAX_SIZE {
        // `(size + 7) >> 3 <= MAX_SIZE / 8`, a valid index.
        Some(CLASS_OF[(size + 7) >> 3] as usize)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_gets_the_smallest_fitting_slot() {
        for size in 1..=MAX_SIZE {
            let class = class_of(size).unwrap();
            let slot = CLASS_SIZES[class];
            assert!(slot >= size, "size {size} got slot {slot}");
            assert!(
                class == 0 || CLASS_SIZES[class - 1] < size,
                "size {size} skipped a smaller slot"
            );
            assert_eq!(slot % 8, 0);
        }
        assert_eq!(class_of(0), None);
        assert_eq!(class_of(MAX_SIZE + 1), None);
        assert_eq!(class_of(usize::MAX), None);
    }

    #[test]
    fn internal_waste_is_bounded_for_every_size() {
        for size in 1..=MAX_SIZE {
            let slot = CLASS_SIZES[class_of(size).unwrap()];
            let waste = slot - size;
            // Never more than the 8-byte rounding or an eighth of the slot ...
            assert!(
                waste < 8 || waste * 8 < slot,
                "size {size}: slot {slot} wastes {waste} bytes"
            );
            // ... and so strictly under 12.5 % of the slot once the rounding stops dominating.
            if size > 56 {
                assert!(
                    (waste as f64) / (slot as f64) < 0.125,
                    "size {size}: slot {slot}"
                );
            }
        }
    }
}
