//! The self-test's guest: its real-mode code and the host memory backing it.

use super::error::SelftestError;

/// The guest-physical address the code is loaded at and starts from.
pub(super) const CODE_ADDR: u64 = 0x1000;

/// The size of the guest memory (one slot at guest address 0).
pub(super) const MEM_SIZE: usize = 0x1_0000;

/// The port the guest writes its greeting to (COM1's data register).
pub(super) const SERIAL_PORT: u16 = 0x3f8;

/// The port the timed loop writes to (the POST diagnostic port).
pub(super) const LOOP_PORT: u16 = 0x80;

/// The guest code for a loop of `exits` port writes (see the module docs of
/// [`super`]).
pub fn guest_code(exits: u16) -> Vec<u8> {
    let [lo, hi] = exits.to_le_bytes();
    let [serial_lo, serial_hi] = SERIAL_PORT.to_le_bytes();
    let [loop_lo, loop_hi] = LOOP_PORT.to_le_bytes();
    vec![
        0xba, serial_lo, serial_hi, // mov dx, 0x3f8
        0x00, 0xd8, // add al, bl
        0x04, b'0', // add al, '0'
        0xee, // out dx, al
        0xb0, b'\n', // mov al, '\n'
        0xee,  // out dx, al
        0xb9, lo, hi, // mov cx, exits
        0xba, loop_lo, loop_hi, // mov dx, 0x80
        0xee,    // again: out dx, al
        0xe2, 0xfd, // loop again
        0xf4, // hlt
    ]
}

/// Anonymous, page-aligned host memory backing the guest; unmapped on drop.
pub(super) struct GuestMemory {
    ptr: *mut u8,
    size: usize,
}

impl GuestMemory {
    /// Maps `size` bytes of anonymous memory.
    pub(super) fn new(size: usize) -> Result<Self, SelftestError> {
        // SAFETY: an anonymous private mapping with no address hint touches no
        // existing memory; the result is checked against MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SelftestError::Mmap {
                size,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self {
            ptr: ptr.cast(),
            size,
        })
    }

    /// The mapping's address in this process (for `KVM_SET_USER_MEMORY_REGION`).
    pub(super) fn host_address(&self) -> u64 {
        self.ptr as u64
    }

    /// Copies `bytes` into the mapping at `offset`.
    pub(super) fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), SelftestError> {
        let end = offset
            .checked_add(bytes.len())
            .filter(|end| *end <= self.size);
        if end.is_none() {
            return Err(SelftestError::InvalidOptions(format!(
                "{} bytes at {offset:#x} do not fit in {} bytes of guest memory",
                bytes.len(),
                self.size
            )));
        }
        // SAFETY: the range [offset, offset + len) was checked to lie inside
        // the mapping, which this struct owns, and `bytes` cannot overlap it.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(offset), bytes.len());
        }
        Ok(())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: ptr/size are exactly what mmap returned, and nothing uses the
        // mapping after drop (the VM that referenced it is dropped first).
        unsafe {
            libc::munmap(self.ptr.cast(), self.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_code_loop_jumps_back_to_the_out() {
        let code = guest_code(7);
        assert_eq!(&code[11..14], &[0xb9, 7, 0]);
        // `loop` is at offset 18; its rel8 (-3) lands on the `out` at 17.
        assert_eq!(code[17], 0xee);
        assert_eq!(&code[18..20], &[0xe2, 0xfd]);
        assert_eq!(code.last(), Some(&0xf4));
    }

    #[test]
    fn writes_outside_the_mapping_are_refused() {
        let mut memory = GuestMemory::new(4096).unwrap();
        assert!(memory.write(4090, &[0; 6]).is_ok());
        assert!(matches!(
            memory.write(4091, &[0; 6]),
            Err(SelftestError::InvalidOptions(_))
        ));
        assert!(memory.write(usize::MAX, &[0]).is_err());
    }
}
