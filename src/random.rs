//! Unpredictable bytes from the operating system's cryptographic generator (`getrandom(2)`),
//! for credentials such as engine.io session ids. Called by `ports::engineio`.

/// `N` bytes from the kernel's cryptographic generator. The kernel's pool is initialised long
/// before a server starts; should the call still fail, `/dev/urandom` is read, and if that fails
/// too the process stops rather than hand out guessable credentials.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: the pointer and length describe the unfilled tail of `out`, a live local
        // array; getrandom writes at most that many bytes into it.
        let got = unsafe { libc::getrandom(out[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if got > 0 {
            filled += got as usize;
            continue;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        use std::io::Read;
        match std::fs::File::open("/dev/urandom").and_then(|mut file| file.read_exact(&mut out)) {
            Ok(()) => return out,
            Err(fallback) => {
                panic!("no cryptographic randomness: {error}; /dev/urandom: {fallback}")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_differ_and_cover_every_position() {
        let first = super::bytes::<16>();
        let second = super::bytes::<16>();
        assert_ne!(first, second, "two draws of 128 bits collided");
        // Over 64 draws every byte position takes more than one value.
        let draws: Vec<[u8; 16]> = (0..64).map(|_| super::bytes::<16>()).collect();
        for position in 0..16 {
            let first = draws[0][position];
            assert!(
                draws.iter().any(|draw| draw[position] != first),
                "position {position}"
            );
        }
    }
}
