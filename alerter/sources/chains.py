"""The chains an on-chain account can be read on: id, block time, and how old a head may be.

    CHAINS["base"].chain_id            # 8453: what the endpoint's eth_chainId must say
    max_block_age_s(CHAINS["base"])    # 30.0: an older head makes the account blind

Block times (the chains' own documentation): Ethereum 12 s slots; OP Stack chains (Optimism,
Base) 2 s; Polygon PoS about 2 s; Avalanche C-Chain about 2 s, with no empty blocks; Arbitrum
One about 0.25 s, but a block only when a transaction comes.

A head older than twice the block time means the endpoint lags behind the chain, so what it
answers may be stale (issue 21). Taken literally, that blinds a quiet chain: Arbitrum makes no
block without a transaction, Avalanche none without one either, and an Ethereum slot is missed
now and then (24 s between two blocks, 2 × 12 s, is a normal event). So the limit is
max(2 × block time, STALE_FLOOR_S): 30 s on every one of these chains today. 30 s is still far
shorter than any figure a trader would accept as live (the default poll interval is longer), and
long enough that a missed Ethereum slot, a quiet Arbitrum minute's usual traffic or a clock a few
seconds off does not cry wolf. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


STALE_FLOOR_S = 30.0
# Multicall3, deployed at the same address on every chain listed here (mds1/multicall3 README)
MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"


@dataclass(frozen=True)
class Chain:
    name: str  # as the config spells it: "base"
    chain_id: int  # EIP-155 id, checked against the endpoint's eth_chainId
    block_time_s: float  # the usual time between blocks
    title: str  # as a person reads it: "Base"


CHAINS: dict[str, Chain] = {c.name: c for c in (
    Chain("ethereum", 1, 12.0, "Ethereum"),
    Chain("optimism", 10, 2.0, "Optimism"),
    Chain("polygon", 137, 2.0, "Polygon"),
    Chain("base", 8453, 2.0, "Base"),
    Chain("arbitrum", 42161, 0.25, "Arbitrum One"),
    Chain("avalanche", 43114, 2.0, "Avalanche C-Chain"),
)}


def max_block_age_s(chain: Chain) -> float:
    """How old the endpoint's newest block may be before its answers count as stale."""
    return max(2 * chain.block_time_s, STALE_FLOOR_S)


def stale_reason(chain: Chain, block_number: int, block_timestamp: int, now_s: float) -> str | None:
    """Why a head of this age makes the account blind (None: fresh). A head from the future (a
    clock behind the chain's) is not stale: the chain's answer is as new as it gets."""
    age = now_s - block_timestamp
    limit = max_block_age_s(chain)
    if age > limit:
        return (f"the RPC endpoint's newest {chain.title} block {block_number} is {age:.0f} s old "
                f"(more than {limit:.0f} s): the endpoint lags behind the chain")
    return None


def is_address(text: object) -> bool:
    """0x and 40 hex digits; in mixed case, only with its EIP-55 checksum right (a mixed-case
    address with one wrong digit fails it, so a typo is refused rather than read as an empty
    position). All lower or all upper case carries no checksum and is taken as it is."""
    if not (isinstance(text, str) and len(text) == 42 and text[:2] == "0x"
            and all(c in "0123456789abcdefABCDEF" for c in text[2:])):
        return False
    digits = text[2:]
    return digits in (digits.lower(), digits.upper()) or checksummed(digits.lower()) == text


def checksummed(digits: str) -> str:
    """The EIP-55 spelling of an address given as 40 lowercase hex digits."""
    from eth_utils import keccak  # eth-hash's keccak-256, on pycryptodome

    hashed = keccak(digits.encode()).hex()
    return "0x" + "".join(c.upper() if int(h, 16) >= 8 else c for c, h in zip(digits, hashed))
