"""Spark (SparkLend): Aave V3's fork, read exactly as Aave's Pool (alerter.sources.aave), on its own
deployment (sparkdotfi/spark-address-registry @5348de20c16dc5174cbdede70ee959dd31f99ec1,
src/SparkLend.sol: Ethereum only among the chains alerter knows). Its health factor and its
liquidation below 1 are Aave's code (sparkdotfi/sparklend-v1-core); only its close factor
differs, which does not move the figure. No public recording of a SparkLend answer exists:
Spark is "not proved".
"""

from __future__ import annotations

from alerter.sources import onchain
from alerter.sources.aave import HEALTH_FACTOR, SPARK, AaveClient, normalise

PROFILE = onchain.profile(
    name="Spark (SparkLend)",
    ids=("spark",),
    modes="a wallet's position on the SparkLend Pool (ethereum). Not proved: no public recording of its answers",
    figure="1 ÷ `healthFactor` of Pool.getUserAccountData(wallet), as Aave V3; equity `totalCollateralBase`, maintenance "
           "equity ÷ health factor; per collateral asset its liquidation price",
    currency="USD (the SparkLend oracle's base currency)",
    liquidation="Anyone may liquidate a position whose health factor is below 1, at once and with no notice (Aave V3's rule).",
    liquidation_url="https://github.com/sparkdotfi/sparklend-v1-core",
    normalise=normalise,
    own_figure=HEALTH_FACTOR,
    connect=lambda account, timeout_s: AaveClient("spark", account, timeout_s),
    check_settings=onchain.chain_check("Spark", SPARK),
)
