"""The article's sentence task: the first clause decides the last word, many words later.

The article's example is "귀여운 강아지를 출근길에서 만났다. 오늘 하루 종일 기분이 (____)": the blank
needs the puppy from the very start. Each example here is

    opening clause (an event, optionally with a neutral place word before its verb)
    + exactly ``distance`` neutral filler words (everyday clauses, cut to length)
    + the cue 오늘 하루 종일 기분이

and the target is the mood the event implies, one of five words. Only the event carries the answer,
so a model that forgets the first words scores chance (20%). Tokens are whole words (어절).
Vocabulary and sentences are this project's own; the test set comes from another seed.
"""

from __future__ import annotations

import random

import torch
from torch import Tensor

from .base import Split, Task, TaskError, check_fits, pad_tokens

CUE = ["오늘", "하루", "종일", "기분이"]
PUNCTUATION = ".,!?…\"'()[]"  # stripped from the ends of a user's words

# mood word -> events (object phrase + verb); a place word may go before the verb
EVENTS: dict[str, list[str]] = {
    "좋았다": [
        "귀여운 강아지를 만났다", "오랜 친구를 우연히 만났다", "어려운 시험에 합격했다",
        "월급이 크게 올랐다", "깜짝 선물을 받았다", "팀장님께 칭찬을 들었다",
        "잃어버린 반지를 찾았다", "작은 복권에 당첨되었다", "글쓰기 대회에서 상을 받았다",
        "무지개를 보았다",
    ],
    "나빴다": [
        "지갑을 잃어버렸다", "마지막 버스를 놓쳤다", "휴대폰 화면이 깨졌다",
        "상사에게 크게 혼났다", "새 옷에 커피를 쏟았다", "소나기에 흠뻑 젖었다",
        "자전거를 도둑맞았다", "주차 위반 딱지를 받았다", "중요한 파일을 날렸다",
        "발을 밟히고 사과도 못 받았다",
    ],
    "슬펐다": [
        "키우던 고양이가 세상을 떠났다", "친한 친구가 멀리 이사를 갔다", "할머니가 편찮으시다는 소식을 들었다",
        "단골 가게가 문을 닫았다", "헤어진 연인의 사진을 보았다", "정든 동료가 회사를 떠났다",
        "응원하던 팀이 결승에서 졌다", "슬픈 영화를 혼자 보았다", "오래된 일기장을 다시 읽었다",
        "화분의 꽃이 모두 시들었다",
    ],
    "설렜다": [
        "다음 주 여행 비행기 표를 샀다", "첫 데이트 약속을 잡았다", "좋아하는 사람에게 연락이 왔다",
        "새 집 열쇠를 받았다", "기다리던 콘서트 표를 구했다", "내일 첫 출근을 한다는 연락을 받았다",
        "새 자전거를 주문했다", "오래 기다린 소포가 도착한다는 문자를 받았다", "동생의 결혼 소식을 들었다",
        "새 노트북 상자를 열었다",
    ],
    "피곤했다": [
        "밤새 보고서를 썼다", "새벽 네 시에 겨우 잠들었다", "이삿짐을 하루 종일 날랐다",
        "야근을 사흘 연속 했다", "아기가 밤새 울었다", "마라톤을 완주했다",
        "회의를 여섯 개나 했다", "계단으로 이십 층을 올라갔다", "장거리 운전을 했다",
        "시차 때문에 한숨도 못 잤다",
    ],
}

PLACES = ["출근길에서", "아침에", "어제", "점심시간에", "퇴근길에", "주말에", "집 앞에서", "회사에서", "오전에"]

FILLERS = [
    "창밖으로 구름이 천천히 지나갔다", "버스는 정류장 몇 개를 더 지났다", "책상 위에는 서류가 쌓여 있었다",
    "점심 메뉴는 김치찌개였다", "회의는 오후 두 시에 시작했다", "엘리베이터를 타고 칠 층으로 올라갔다",
    "메일함에는 새 메일이 몇 통 있었다", "달력을 한 장 넘겼다", "길가에 나무들이 줄지어 서 있었다",
    "지하철 안은 평소처럼 붐볐다", "라디오에서 일기 예보가 나왔다", "창문을 조금 열어 두었다",
    "신호등이 초록색으로 바뀌었다", "동료가 서류를 복사했다", "벽시계가 열두 시를 가리켰다",
    "편의점 앞에 자전거가 세워져 있었다", "컴퓨터를 켜고 자리에 앉았다", "복도에서 발소리가 들렸다",
    "물을 한 컵 따랐다", "우산을 가방에 넣었다", "계단을 천천히 내려갔다", "하늘은 조금 흐렸다",
    "화분에 물을 주었다", "창가 자리에 앉았다", "노트에 할 일을 적었다", "손을 씻고 돌아왔다",
    "전화기를 충전기에 꽂았다", "공원 벤치에 비둘기가 앉아 있었다", "가게 간판에 불이 켜졌다",
    "옆자리에서 키보드 소리가 났다", "택시 한 대가 골목으로 들어갔다", "냉장고 문을 열었다 닫았다",
]

MOODS = list(EVENTS)
PAD, UNK = "<pad>", "<unk>"


def build_vocab() -> list[str]:
    """All words of the task, sorted, after <pad> (id 0) and <unk> (id 1)."""
    words = set(CUE) | set(MOODS) | {w for p in PLACES for w in p.split()}
    for text in [e for events in EVENTS.values() for e in events] + FILLERS:
        words.update(text.split())
    return [PAD, UNK] + sorted(words)


def make_sentence(rng: random.Random, distance: int) -> tuple[list[str], int]:
    """One example: its words (ending with the cue) and the index of its mood in ``MOODS``."""
    label = rng.randrange(len(MOODS))
    event = rng.choice(EVENTS[MOODS[label]]).split()
    if rng.random() < 0.8:  # a neutral place word before the verb, as in the article's example
        event = event[:-1] + rng.choice(PLACES).split() + event[-1:]
    filler: list[str] = []
    while len(filler) < distance:
        filler += rng.choice(FILLERS).split()
    return event + filler[:distance] + CUE, label


class SentenceTask(Task):
    """Predict the mood word after the cue from an event ``distance`` words before it."""

    name = "sentence"
    head = "last"
    loss = "ce"
    option_names = ("distance", "size")
    defaults = {"steps": 1000, "hidden_size": 64, "embed_size": 32, "lr": 3e-3, "batch_size": 64,
                "forget_bias": 5.0}  # see lstmkit.demo for why 5

    def __init__(self, options: dict, seed: int) -> None:
        super().__init__(options, seed)
        self.distance = self.opt("distance", 20, minimum=0)
        self.size = self.opt("size", 4000, minimum=30)
        check_fits(f"--size {self.size} with --distance {self.distance}", self.size * 27 // 20,
                   self.distance + 12, 48)
        self.vocab = build_vocab()
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.output_size = len(MOODS)

    def generate(self, n: int, seed: int) -> Split:
        """``n`` examples drawn with ``seed``."""
        rng = random.Random(seed)
        pairs = [make_sentence(rng, self.distance) for _ in range(n)]
        x, lengths = pad_tokens([[self.index[w] for w in words] for words, _ in pairs])
        return Split(x, torch.tensor([label for _, label in pairs]), lengths)

    def build(self) -> tuple[Split, Split, Split]:
        n_val = max(self.size // 10, 10)
        train = self.generate(self.size, self.seed)
        val = self.generate(n_val, self.seed + 1_000_003)
        test = self.generate(max(self.size // 4, 10), self.seed + 2_000_003)  # held out: another seed
        return train, val, test

    def summary(self, scores: dict[str, float]) -> str:
        return f"accuracy {scores['accuracy']:.1%} (chance {1 / len(MOODS):.0%})"

    def encode(self, text: str) -> Split:
        """A user's sentence -> one example; the cue is appended when missing."""
        words = [w.strip(PUNCTUATION) for w in text.split()]   # "만났다." is the word 만났다
        words = [w for w in words if w]
        if not words:
            raise TaskError("--input is empty: give a sentence, e.g. '귀여운 강아지를 만났다 오늘 하루 종일 기분이'")
        if words[-len(CUE):] != CUE:
            words += CUE
        unknown = list(dict.fromkeys(w for w in words if w not in self.index))
        self.notes = [f"{len(unknown)} word(s) not in the task's vocabulary, read as {UNK}: "
                      + ", ".join(unknown)] if unknown else []
        x, lengths = pad_tokens([[self.index.get(w, 1) for w in words]])
        return Split(x, torch.zeros(1, dtype=torch.int64), lengths)

    def decode(self, out: Tensor) -> str:
        probs = out.softmax(-1)[0]
        best = int(probs.argmax())
        return f"{MOODS[best]}  ({probs[best]:.0%}; " + ", ".join(
            f"{m} {p:.0%}" for m, p in zip(MOODS, probs.tolist(), strict=True)) + ")"
