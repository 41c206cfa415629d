"""A warm sequence across tests: each warm_start test gets the environment left before."""

import pytest

pytestmark = pytest.mark.lambda_handler("app.counter.handler")


@pytest.mark.warm_start
def test_first_in_sequence(lambda_env):
    assert lambda_env.invoke({})["invocations_in_this_environment"] == 1


@pytest.mark.warm_start
def test_second_in_sequence_sees_the_same_environment(lambda_env):
    assert lambda_env.invoke({})["invocations_in_this_environment"] == 2


@pytest.mark.cold_start
def test_a_cold_start_gets_a_fresh_environment(lambda_env):
    assert lambda_env.invoke({})["invocations_in_this_environment"] == 1
