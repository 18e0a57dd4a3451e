// avatar_bridge_client.hpp — header-only C++17 subscriber for the avatar-bridge bus, wire schema v1.
//
// The wire spec is docs/protocol.md; this reader validates exactly what avatar_bridge/bus/wire.py's
// validate_face() validates, so a message the Python reference refuses is refused here too.
// Needs cppzmq (zmq.hpp, zmq_addon.hpp) over libzmq, and msgpack-cxx (header-only).
//
//   avatar_bridge::Subscriber sub;
//   sub.connect("tcp://127.0.0.1:5570");
//   avatar_bridge::FaceFrame f;
//   while (sub.receive(f, 100)) { use(f.bs[avatar_bridge::kJawOpen], avatar_bridge::to_unreal(f.head)); }
#pragma once

// msgpack-cxx needs Boost only for its Boost adaptors; this header uses the object API alone, and
// Unreal (the main consumer) ships no Boost.
#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif

#include <msgpack.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace avatar_bridge {

constexpr int kSchemaVersion = 1;
constexpr std::size_t kNumBlendshapes = 52;
// CRC-32 (zlib) of the 52 names joined by ","; checked against the table below at compile time.
constexpr std::uint32_t kNamesHash = 3033183245u;
constexpr const char* kTopicFace = "face";

// Apple's ARFaceAnchor.BlendShapeLocation order (= Unreal's EARFaceBlendShape), as on the wire.
// Left/Right are the performer's own sides.
constexpr std::array<const char*, kNumBlendshapes> kArkitBlendshapes = {
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
};
constexpr std::size_t kJawOpen = 17;

namespace detail {
constexpr std::uint32_t crc32_update(std::uint32_t crc, unsigned char byte) {
    crc ^= byte;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    return crc;
}
constexpr std::uint32_t names_crc32() {
    std::uint32_t crc = 0xFFFFFFFFu;
    for (std::size_t i = 0; i < kArkitBlendshapes.size(); ++i) {
        if (i > 0) crc = crc32_update(crc, ',');
        for (const char* c = kArkitBlendshapes[i]; *c; ++c) crc = crc32_update(crc, static_cast<unsigned char>(*c));
    }
    return ~crc;
}
}  // namespace detail
static_assert(detail::names_crc32() == kNamesHash, "ARKit name table does not match the wire's names_hash");

/// One schema-v1 `face` message. Units and axes as in docs/protocol.md (camera space, metres, radians).
struct FaceFrame {
    struct Head {
        std::array<float, 4> q{0.f, 0.f, 0.f, 1.f};  // unit quaternion (x, y, z, w), head -> camera space
        std::array<float, 3> p{0.f, 0.f, 0.f};       // head origin in camera space, metres
    };
    struct Gaze {
        std::array<float, 2> l{0.f, 0.f};  // performer's left eye (yaw, pitch), radians
        std::array<float, 2> r{0.f, 0.f};
    };
    std::int64_t seq = 0;      // +1 per message; a gap means messages were missed
    double t = 0.0;            // capture time, seconds; use differences only
    double tp = 0.0;           // publish time (optional key; 0 when absent)
    std::int64_t frame = -1;   // source frame index (optional key; -1 when absent)
    std::array<float, kNumBlendshapes> bs{};  // 0..1, in kArkitBlendshapes order
    Head head;
    Gaze gaze;
    float conf = 0.f;
    bool present = false;      // false: no face this frame; values are the hold/ease output, safe to apply
    std::uint32_t names_hash = 0;
};

/// A payload that is not a valid schema-v1 face message; what() names the field.
class WireError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace detail {
using msgpack::object;
namespace type = msgpack::type;

// Python's msgpack (raw=False) refuses a str that is not UTF-8, so the whole message is refused.
inline bool valid_utf8(const char* s, std::uint32_t n) {
    const auto* u = reinterpret_cast<const unsigned char*>(s);
    for (std::uint32_t i = 0; i < n;) {
        unsigned c = u[i];
        std::uint32_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (len == 0 || i + len > n) return false;
        std::uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
        for (std::uint32_t k = 1; k < len; ++k) {
            if ((u[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (u[i + k] & 0x3F);
        }
        static constexpr std::uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};  // reject overlong forms
        if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

inline void check_strings(const object& o, int depth = 0) {
    if (depth > 64) throw WireError("payload nests too deeply");
    if (o.type == type::STR && !valid_utf8(o.via.str.ptr, o.via.str.size))
        throw WireError("payload is not msgpack: a string is not valid UTF-8");
    if (o.type == type::ARRAY)
        for (std::uint32_t i = 0; i < o.via.array.size; ++i) check_strings(o.via.array.ptr[i], depth + 1);
    if (o.type == type::MAP)
        for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
            check_strings(o.via.map.ptr[i].key, depth + 1);
            check_strings(o.via.map.ptr[i].val, depth + 1);
        }
}

// Last occurrence wins, as when Python builds a dict from the map.
inline const object* find(const object& map, const char* key) {
    const object* found = nullptr;
    const std::size_t n = std::strlen(key);
    for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
        const auto& kv = map.via.map.ptr[i];
        if (kv.key.type == type::STR && kv.key.via.str.size == n && std::memcmp(kv.key.via.str.ptr, key, n) == 0)
            found = &kv.val;
    }
    return found;
}

inline bool is_int(const object& o) { return o.type == type::POSITIVE_INTEGER || o.type == type::NEGATIVE_INTEGER; }
// Both float32 and float64 are numbers, and so are ints (Python's isinstance(x, (int, float))); bool is not.
inline bool is_number(const object& o) { return is_int(o) || o.type == type::FLOAT32 || o.type == type::FLOAT64; }
inline double as_double(const object& o) {
    if (o.type == type::POSITIVE_INTEGER) return static_cast<double>(o.via.u64);
    if (o.type == type::NEGATIVE_INTEGER) return static_cast<double>(o.via.i64);
    return o.via.f64;  // msgpack-cxx widens float32 into f64 exactly
}

inline const object& required(const object& map, const char* key) {
    const object* o = find(map, key);
    if (!o) throw WireError(std::string("missing field '") + key + "'");
    return *o;
}

template <std::size_t N>
void floats(const object* o, std::array<float, N>& out, const char* field) {
    if (!o || o->type != type::ARRAY || o->via.array.size != N)
        throw WireError(std::string("field '") + field + "' must be a list of " + std::to_string(N) + " numbers");
    for (std::size_t i = 0; i < N; ++i) {
        const object& x = o->via.array.ptr[i];
        if (!is_number(x) || !std::isfinite(as_double(x)))
            throw WireError(std::string("field '") + field + "' holds a non-finite or non-number value");
        out[i] = static_cast<float>(as_double(x));
    }
}
}  // namespace detail

/// Decode and validate one `face` payload (the second frame of the multipart message).
/// Throws WireError for anything avatar_bridge/bus/wire.py's decode_face_message would refuse.
inline FaceFrame decode_face(const void* data, std::size_t size) {
    using namespace detail;
    // No element of a msgpack container takes less than one byte, so a count above the payload
    // size is garbage: capping every limit there keeps a 5-byte "array of 4e9" from allocating.
    const std::size_t cap = std::min<std::size_t>(size, std::numeric_limits<std::uint32_t>::max());
    const msgpack::unpack_limit limit(cap, cap, cap, cap, cap, 64);
    msgpack::object_handle handle;
    std::size_t offset = 0;
    try {
        handle = msgpack::unpack(static_cast<const char*>(data), size, offset, nullptr, nullptr, limit);
    } catch (const std::exception& exc) {  // unpack_error, size overflows, bad_alloc: all mean garbage
        throw WireError(std::string("payload is not msgpack: ") + exc.what());
    }
    if (offset != size) throw WireError("payload is not msgpack: extra bytes after the map");
    const object& msg = handle.get();
    check_strings(msg);
    if (msg.type != type::MAP) throw WireError("a face message must be a map");

    const object* v = find(msg, "v");
    if (!v || v->type != type::POSITIVE_INTEGER || v->via.u64 != kSchemaVersion)
        throw WireError("unsupported schema version; this reader speaks v1");

    FaceFrame f;
    const object& seq = required(msg, "seq");
    if (!is_int(seq)) throw WireError("field 'seq' has the wrong type");
    if (seq.type == type::POSITIVE_INTEGER && seq.via.u64 > static_cast<std::uint64_t>(INT64_MAX))
        throw WireError("field 'seq' is out of range");
    f.seq = seq.type == type::POSITIVE_INTEGER ? static_cast<std::int64_t>(seq.via.u64) : seq.via.i64;

    const object& t = required(msg, "t");
    if (!is_number(t)) throw WireError("field 't' has the wrong type");
    f.t = as_double(t);
    const object& names_hash = required(msg, "names_hash");
    if (!is_int(names_hash)) throw WireError("field 'names_hash' has the wrong type");
    const object& conf = required(msg, "conf");
    if (!is_number(conf)) throw WireError("field 'conf' has the wrong type");
    f.conf = static_cast<float>(as_double(conf));
    const object& present = required(msg, "present");
    if (present.type != type::BOOLEAN) throw WireError("field 'present' has the wrong type");
    f.present = present.via.boolean;
    if (names_hash.type != type::POSITIVE_INTEGER || names_hash.via.u64 != kNamesHash)
        throw WireError("names_hash does not match this reader's ARKit name table");
    f.names_hash = kNamesHash;

    floats(find(msg, "bs"), f.bs, "bs");
    const object* head = find(msg, "head");
    const object* gaze = find(msg, "gaze");
    if (!head || head->type != type::MAP || !gaze || gaze->type != type::MAP)
        throw WireError("fields 'head' and 'gaze' must be maps");
    floats(find(*head, "q"), f.head.q, "head.q");
    floats(find(*head, "p"), f.head.p, "head.p");
    floats(find(*gaze, "l"), f.gaze.l, "gaze.l");
    floats(find(*gaze, "r"), f.gaze.r, "gaze.r");

    // Optional keys: read when well-typed, as wire.message_to_face does.
    if (const object* tp = find(msg, "tp"); tp && is_number(*tp)) f.tp = as_double(*tp);
    if (const object* fr = find(msg, "frame"); fr && is_int(*fr))
        f.frame = fr->type == type::POSITIVE_INTEGER ? static_cast<std::int64_t>(fr->via.u64) : fr->via.i64;
    return f;
}

/// A head pose in Unreal's axes: left-handed, x forward, y right, z up; centimetres.
struct UnrealPose {
    std::array<double, 4> q;  // (x, y, z, w), feed to FQuat(X, Y, Z, W)
    std::array<double, 3> p;  // centimetres, feed to FVector
};

/// Same math as avatar_bridge/conventions.py to_unreal: basis A (camera +z -> +x, +x -> -y, +y -> +z);
/// a quaternion's vector part is a pseudovector, so it maps to -A v.
inline UnrealPose to_unreal(const std::array<double, 4>& q, const std::array<double, 3>& p) {
    return {{-q[2], q[0], -q[1], q[3]}, {100.0 * p[2], -100.0 * p[0], 100.0 * p[1]}};
}
inline UnrealPose to_unreal(const FaceFrame::Head& head) {
    return to_unreal({head.q[0], head.q[1], head.q[2], head.q[3]}, {head.p[0], head.p[1], head.p[2]});
}

/// A ZeroMQ SUB socket on the bus's `face` topic. Malformed messages are counted and skipped, never thrown.
/// Not thread-safe: use one Subscriber per thread (e.g. a Live Link source's reader thread).
class Subscriber {
public:
    explicit Subscriber(int rcv_hwm = 10000) : ctx_(1), sock_(ctx_, zmq::socket_type::sub) {
        sock_.set(zmq::sockopt::rcvhwm, rcv_hwm);  // room for the caller's own bursts (protocol.md, back-pressure)
        sock_.set(zmq::sockopt::linger, 0);
        sock_.set(zmq::sockopt::subscribe, kTopicFace);
    }

    void connect(const std::string& endpoint) { sock_.connect(endpoint); }

    /// Wait up to timeout_ms for the next valid face message; false on timeout.
    bool receive(FaceFrame& out, int timeout_ms) {
        using clock = std::chrono::steady_clock;
        const auto deadline = clock::now() + std::chrono::milliseconds(timeout_ms);
        std::vector<zmq::message_t> parts;
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
            zmq::pollitem_t item{static_cast<void*>(sock_), 0, ZMQ_POLLIN, 0};
            if (zmq::poll(&item, 1, std::max<std::chrono::milliseconds>(left, std::chrono::milliseconds(0))) == 0)
                return false;
            parts.clear();
            if (!zmq::recv_multipart(sock_, std::back_inserter(parts), zmq::recv_flags::dontwait)) continue;
            // SUB filters by prefix: "faces" would pass the "face" subscription but is another topic.
            if (parts.empty() || parts[0].to_string_view() != kTopicFace) continue;
            if (parts.size() != 2) {
                reject("a face message must have 2 frames [topic, payload], got " + std::to_string(parts.size()));
                continue;
            }
            try {
                out = decode_face(parts[1].data(), parts[1].size());
                ++received_;
                return true;
            } catch (const WireError& err) {
                reject(err.what());
            }
        }
    }

    std::uint64_t received() const { return received_; }
    std::uint64_t malformed() const { return malformed_; }
    const std::string& last_error() const { return last_error_; }
    /// Called with the reason for each skipped message (e.g. to log it); runs on the receiving thread.
    void on_malformed(std::function<void(const std::string&)> callback) { on_malformed_ = std::move(callback); }

private:
    void reject(const std::string& reason) {
        ++malformed_;
        last_error_ = reason;
        if (on_malformed_) on_malformed_(reason);
    }

    zmq::context_t ctx_;
    zmq::socket_t sock_;
    std::uint64_t received_ = 0;
    std::uint64_t malformed_ = 0;
    std::string last_error_;
    std::function<void(const std::string&)> on_malformed_;
};

}  // namespace avatar_bridge
