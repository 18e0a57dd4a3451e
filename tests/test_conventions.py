import math

import pytest

from avatar_bridge import conventions as cv

TURN_LEFT_30 = cv.axis_angle((0, 1, 0), math.radians(30))  # performer turns to their left


def _approx(a, b, tol=1e-9):
    return all(abs(x - y) < tol for x, y in zip(a, b))


def test_turning_left_moves_the_nose_to_image_right_in_camera_space():
    nose = cv.rotate(TURN_LEFT_30, (0, 0, 1))
    assert nose[0] > 0.49  # image right = performer's left when facing the camera


def test_turning_left_30_degrees_turns_the_unity_avatar_to_its_left():
    q, p = cv.to_unity(TURN_LEFT_30, (0.1, 0.2, -0.5))
    nose = cv.rotate(q, (0, 0, 1))  # Unity forward; the avatar's left is -x
    assert nose[0] == pytest.approx(-0.5, abs=1e-9) and nose[2] == pytest.approx(math.cos(math.radians(30)))
    assert p == (-0.1, 0.2, -0.5)
    # as a Unity yaw: rotation about +y by -30 degrees
    assert _approx(q, cv.axis_angle((0, 1, 0), math.radians(-30)))


def test_turning_left_30_degrees_is_a_negative_unreal_yaw():
    q, p = cv.to_unreal(TURN_LEFT_30, (0.1, 0.2, -0.5))
    assert _approx(q, cv.axis_angle((0, 0, 1), math.radians(-30)))
    forward = cv.rotate(q, (1, 0, 0))
    assert forward[1] < -0.49  # towards -y, the avatar's left
    assert p == pytest.approx((-50.0, -10.0, 20.0))


def test_unity_and_unreal_keep_pitch_as_a_nod():
    nod_down = cv.axis_angle((1, 0, 0), math.radians(20))
    qu, _ = cv.to_unity(nod_down, (0, 0, 0))
    assert cv.rotate(qu, (0, 0, 1))[1] < -0.3  # Unity forward tips down
    qe, _ = cv.to_unreal(nod_down, (0, 0, 0))
    assert cv.rotate(qe, (1, 0, 0))[2] < -0.3  # Unreal forward tips down


@pytest.mark.parametrize("deg", [-60, -15, 0, 10, 45, 89])
def test_yaw_only_rotation_round_trips_through_head_yaw_pitch_roll(deg):
    yaw, pitch, roll = cv.head_yaw_pitch_roll(cv.axis_angle((0, 1, 0), math.radians(deg)))
    assert yaw == pytest.approx(math.radians(deg)) and abs(pitch) < 1e-9 and abs(roll) < 1e-9


def test_yaw_pitch_roll_round_trip_and_signs():
    angles = (0.3, -0.2, 0.1)
    assert cv.head_yaw_pitch_roll(cv.from_yaw_pitch_roll(*angles)) == pytest.approx(angles)
    _, pitch, _ = cv.head_yaw_pitch_roll(cv.axis_angle((1, 0, 0), 0.25))
    assert pitch == pytest.approx(0.25)  # +x rotation = nose down = positive pitch


def test_mirror_negates_yaw_and_roll_and_keeps_pitch():
    q = cv.from_yaw_pitch_roll(0.4, 0.2, -0.3)
    qm, pm = cv.mirror_pose(q, (0.05, 0.1, -0.6))
    assert cv.head_yaw_pitch_roll(qm) == pytest.approx((-0.4, 0.2, 0.3))
    assert pm == (-0.05, 0.1, -0.6)


def test_gaze_quaternion_looks_left_and_up():
    d = cv.rotate(cv.gaze_quaternion(0.3, 0.2), (0, 0, 1))
    assert d[0] > 0 and d[1] > 0
