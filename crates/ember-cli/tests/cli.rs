//! The `ember` binary end to end on the tiny fixture models of ember-lm (context of 64
//! tokens): chat turns from stdin, stop strings, clear errors for prompts too long, a
//! Hugging Face directory in place of a GGUF file, and `bench llm`'s report and flag checks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ember-lm/tests/fixtures").join(name)
}

/// Runs `ember args...` on the tiny untied model with `stdin` as its input.
fn ember(args: &[&str], stdin: &str) -> Output {
    ember_on(&fixture("tiny_llama_untied.gguf"), args, stdin)
}

/// Runs `ember args... --model model` with `stdin` as its input.
fn ember_on(model: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .arg("--model")
        .arg(model)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn chat_answers_turns_from_stdin() {
    let chat = ember(&["chat", "--max-tokens", "6"], "Hello world\nAnd 42?\nq\nnot read\n");
    assert!(chat.status.success(), "{}", stderr(&chat));
    let out = stdout(&chat);
    assert!(!out.trim().is_empty(), "no reply printed: {out:?}");
    // The first reply is what `generate` answers to the same message (greedy).
    let once = ember(&["generate", "--max-tokens", "6", "--prompt", "Hello world"], "");
    assert!(once.status.success(), "{}", stderr(&once));
    assert!(out.starts_with(&stdout(&once)), "chat {out:?} vs generate {:?}", stdout(&once));
    assert!(out.len() > stdout(&once).len(), "no second reply: {out:?}");
    // End of input quits as `q` does; `r` starts over, so the reply repeats.
    let reset = ember(&["chat", "--max-tokens", "6"], "Hello world\nr\nHello world\n");
    assert!(reset.status.success(), "{}", stderr(&reset));
    assert_eq!(stdout(&reset), stdout(&once).repeat(2));
}

#[test]
fn chat_and_generate_report_prompts_longer_than_the_context() {
    let long = "the quick brown fox jumps over the lazy dog ".repeat(6);
    let chat = ember(&["chat", "--max-tokens", "4"], &format!("{long}\nHello world\n"));
    assert!(chat.status.success(), "{}", stderr(&chat));
    let err = stderr(&chat);
    assert!(err.contains("tokens; the model's context is 64"), "{err}");
    // The long turn was dropped and the next one answered.
    assert!(!stdout(&chat).trim().is_empty());
    let gen = ember(&["generate", "--prompt", &long], "");
    assert!(!gen.status.success());
    assert!(stderr(&gen).contains("the model's context is 64"), "{}", stderr(&gen));
}

#[test]
fn generate_stops_at_a_stop_string_and_checks_its_flags() {
    let args = ["generate", "--max-tokens", "10", "--ignore-eos", "--prompt", "Hello world"];
    let free = ember(&args, "");
    assert!(free.status.success(), "{}", stderr(&free));
    let text = stdout(&free);
    let text = text.strip_suffix('\n').unwrap();
    // Stop at a piece from the middle of the output (three characters long at most).
    let mid: String = text.chars().skip(text.chars().count() / 2).take(3).collect();
    let stopped = ember(&[&args[..], &["--stop", &mid]].concat(), "");
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    assert_eq!(stdout(&stopped), format!("{}\n", &text[..text.find(&mid).unwrap()]));
    assert!(stderr(&stopped).contains("stopped at a stop string"), "{}", stderr(&stopped));
    let bad = ember(&[&args[..], &["--repetition-penalty=-2"]].concat(), "");
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("repetition_penalty must be a non-negative number"));
}

#[test]
fn generate_and_chat_run_a_hugging_face_directory() {
    // hf/tiny_llama is tiny_llama.gguf as transformers saved it (float32).
    let (dir, gguf) = (fixture("hf/tiny_llama"), fixture("tiny_llama.gguf"));
    let args = ["generate", "--max-tokens", "8", "--prompt", "Hello world"];
    let from_dir = ember_on(&dir, &args, "");
    assert!(from_dir.status.success(), "{}", stderr(&from_dir));
    assert!(stderr(&from_dir).contains("hf/tiny_llama)"), "{}", stderr(&from_dir));
    let from_gguf = ember_on(&gguf, &args, "");
    assert!(from_gguf.status.success(), "{}", stderr(&from_gguf));
    assert_eq!(stdout(&from_dir), stdout(&from_gguf));
    let chat = ember_on(&dir, &["chat", "--max-tokens", "8"], "Hello world\nq\n");
    assert!(chat.status.success(), "{}", stderr(&chat));
    assert!(stdout(&chat).starts_with(&stdout(&from_dir)), "{}", stdout(&chat));
}

/// The numbers in `line` (digits and dots between other characters), in order.
fn numbers(line: &str) -> Vec<f64> {
    line.split(|c: char| !c.is_ascii_digit() && c != '.')
        .filter_map(|w| w.trim_matches('.').parse().ok())
        .collect()
}

/// The line of `text` starting with `prefix`.
fn line_starting<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?}: {text}"))
}

#[test]
fn bench_llm_reports_each_trial_and_the_medians() {
    let run = ember(&["bench", "llm", "-p", "5", "-g", "4", "-n", "3", "--seed", "7"], "");
    assert!(run.status.success(), "{}", stderr(&run));
    let (out, err) = (stdout(&run), stderr(&run));
    let trials: Vec<&str> = err.lines().filter(|l| l.starts_with("Trial ")).collect();
    assert_eq!(trials.len(), 3, "{err}");
    for (i, line) in trials.iter().enumerate() {
        let prefix = format!("Trial {}/3: prompt 5 tokens, ", i + 1);
        assert!(line.starts_with(&prefix), "{line}");
        assert!(line.contains("; generation 4 tokens, "), "{line}");
    }
    assert!(out.contains("Trials: 3, prompt 5 tokens, generation 4 tokens\n"), "{out}");
    for figure in ["Prompt tokens-per-sec:", "Generation tokens-per-sec:", "Time to first token"] {
        let line = line_starting(&out, figure);
        let n = numbers(line.split_once(':').unwrap().1);
        let [median, min, max] = n[..] else { panic!("not median, min, max: {line}") };
        assert!(min > 0.0 && min.is_finite() && min <= median && median <= max, "{line}");
    }
    assert!(line_starting(&out, "Load: ").contains("tiny_llama_untied.gguf"), "{out}");
    // The resident peak (the arrays' peak may round to 0.000 GB on the tiny model).
    assert!(numbers(line_starting(&out, "Peak memory: "))[0] > 0.0, "{out}");
}

#[test]
fn bench_llm_fills_the_context_but_not_past_it() {
    // 54 + 10 tokens fill the context of 64; the last token is never run through the model.
    let full = ember(&["bench", "llm", "-p", "54", "-g", "10", "-n", "1"], "");
    assert!(full.status.success(), "{}", stderr(&full));
    assert!(stderr(&full).contains("prompt 54 tokens, "), "{}", stderr(&full));
    assert!(stderr(&full).contains("generation 10 tokens, "), "{}", stderr(&full));
    let over = ember(&["bench", "llm", "-p", "55", "-g", "10", "-n", "1"], "");
    assert!(!over.status.success());
    let err = stderr(&over);
    assert!(err.contains("--prompt-tokens (55) plus --generation-tokens (10) is 65"), "{err}");
    assert!(err.contains("the model's context of 64 tokens"), "{err}");
}

#[test]
fn bench_llm_rejects_zero_counts_naming_the_flag() {
    for (flag, name) in
        [("-p", "--prompt-tokens"), ("-g", "--generation-tokens"), ("-n", "--num-trials")]
    {
        let run = ember(&["bench", "llm", flag, "0"], "");
        assert!(!run.status.success(), "{flag} 0 was accepted");
        let err = stderr(&run);
        assert!(err.contains(&format!("invalid value '0' for '{name}")), "{flag}: {err}");
    }
}
