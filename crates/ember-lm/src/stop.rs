//! Stop strings over streamed text: generation ends where the text first contains one, and
//! neither it nor anything after it is emitted, even when it arrives split over several
//! pieces. Text that could be the start of a stop string is held back until the next piece
//! settles it.

/// Watches streamed text for stop strings.
#[derive(Clone, Debug, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    /// Text received but not yet emitted: the longest tail that begins a stop string.
    held: String,
    stopped: bool,
}

/// What a piece of text let through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Text safe to emit.
    pub text: String,
    /// A stop string was found: `text` ends where it began.
    pub stopped: bool,
}

impl StopStrings {
    /// Watches for `stops`; empty strings are ignored.
    pub fn new(stops: &[String]) -> StopStrings {
        let stops = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        StopStrings { stops, held: String::new(), stopped: false }
    }

    /// Adds the next piece of text. After a stop, everything is swallowed.
    pub fn push(&mut self, piece: &str) -> Checked {
        if self.stopped {
            return Checked { text: String::new(), stopped: true };
        }
        self.held.push_str(piece);
        // Every stop string that starts in the emitted text was ruled out before: search the
        // held text only.
        let first = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(at) = first {
            self.held.truncate(at);
            self.stopped = true;
            return Checked { text: std::mem::take(&mut self.held), stopped: true };
        }
        let keep = self.stops.iter().map(|s| partial_suffix(&self.held, s)).max().unwrap_or(0);
        let text = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        Checked { text, stopped: false }
    }

    /// The held text, at the end of generation: no stop string completed it.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The length of the longest tail of `text` that is a proper beginning of `stop`.
fn partial_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .find(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The emitted text of `pieces` and whether a stop was found.
    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = StopStrings::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let c = s.push(p);
            out.push_str(&c.text);
            if c.stopped {
                return (out, true);
            }
        }
        out.push_str(&s.finish());
        (out, false)
    }

    #[test]
    fn stops_within_one_piece_and_across_pieces() {
        assert_eq!(run(&["END"], &["abcENDdef"]), ("abc".into(), true));
        assert_eq!(run(&["END"], &["ab", "cE", "N", "Dxyz"]), ("abc".into(), true));
        assert_eq!(run(&["\n\n"], &["line\n", "\nnext"]), ("line".into(), true));
        // The earliest of several stop strings wins.
        assert_eq!(run(&["cd", "bcx"], &["ab", "cdx"]), ("ab".into(), true));
        assert_eq!(run(&["STOP"], &["STOP"]), (String::new(), true));
    }

    #[test]
    fn held_text_that_does_not_complete_a_stop_is_emitted() {
        let stops = ["END"];
        let mut s = StopStrings::new(&["END".to_string()]);
        assert_eq!(s.push("abE").text, "ab");
        assert_eq!(s.push("N").text, "");
        assert_eq!(s.push("x").text, "ENx");
        // Held at the end of generation, then released by finish.
        assert_eq!(s.push("EN").text, "");
        assert_eq!(s.finish(), "EN");
        assert_eq!(run(&stops, &["E", "E", "ND!"]), ("E".into(), true));
        assert_eq!(run(&stops, &["no stop here"]), ("no stop here".into(), false));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&[""], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn multibyte_characters_are_never_split() {
        // A partial stop string is matched (and held) in whole characters only.
        assert_eq!(run(&["本語"], &["日", "本", "人"]), ("日本人".into(), false));
        assert_eq!(run(&["本語"], &["日", "本", "語です"]), ("日".into(), true));
        assert_eq!(partial_suffix("x日", "日本"), "日".len());
        assert_eq!(partial_suffix("x", "日本"), 0);
    }

    #[test]
    fn after_a_stop_everything_is_swallowed() {
        let mut s = StopStrings::new(&["x".to_string()]);
        assert_eq!(s.push("axb"), Checked { text: "a".into(), stopped: true });
        assert_eq!(s.push("more"), Checked { text: String::new(), stopped: true });
        assert_eq!(s.finish(), "");
    }
}
