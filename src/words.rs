//! Counts in messages agree in number: "1 error", "2 errors", never "1 errors"
//! or "error(s)".

/// `n` and the noun that goes with it.
pub fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular_and_the_rest_plural() {
        assert_eq!(super::count(0, "error", "errors"), "0 errors");
        assert_eq!(super::count(1, "error", "errors"), "1 error");
        assert_eq!(super::count(2, "drop-in", "drop-ins"), "2 drop-ins");
    }
}
