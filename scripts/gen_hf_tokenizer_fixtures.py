"""A Hugging Face tokenizer as open_clip uses one (`HFTokenizer`: CLIPA's BERT, the worldwide models' mT5 /
XLM-V), for checking ours against it. No vocabulary can be downloaded here, so a small BERT-style WordPiece
tokenizer is trained with the `tokenizers` package on the texts of fixtures/tokenizer_corpus.jsonl and saved
as transformers saves one (`tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`).

    /tmp/venv/bin/python scripts/gen_hf_tokenizer_fixtures.py

Outputs under fixtures/hf_tokenizer/: bert_tiny/ (the tokenizer), and expected.jsonl: per text (the first 240)
and per
open_clip setting (clean whitespace / lower / canonicalize, strip_sep_token, context 16), the ids of
`open_clip.tokenizer.HFTokenizer(bert_tiny, ...)`.
"""
import json
import pathlib

import open_clip
import transformers
from open_clip.tokenizer import HFTokenizer
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "hf_tokenizer"


def main():
    texts = [json.loads(l)["text"] for l in (ROOT / "fixtures" / "tokenizer_corpus.jsonl").read_text().split("\n") if l.strip()]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(texts, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]")
    d = OUT / "bert_tiny"
    fast.save_pretrained(d)
    rows = []
    for clean in ["whitespace", "lower", "canonicalize"]:
        for strip in [False, True]:
            oc = HFTokenizer(str(d), context_length=16, clean=clean, strip_sep_token=strip)
            sample = texts[:240]
            ids = oc(sample).tolist()
            rows += [{"clean": clean, "strip_sep_token": strip, "text": t, "ids": i} for t, i in zip(sample, ids)]
    with open(OUT / "expected.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} rows; vocabulary {tok.get_vocab_size()}; transformers {transformers.__version__}, open_clip {open_clip.__version__}")


if __name__ == "__main__":
    main()
