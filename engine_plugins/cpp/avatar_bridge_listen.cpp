// avatar_bridge_listen — prints one JSON line per face message from the avatar-bridge bus.
//
// The seed of an Unreal Live Link source (see ../unreal/README.md) and the program the tests run
// against a live daemon. Usage:
//   avatar_bridge_listen [--bus tcp://127.0.0.1:5570] [--count N] [--timeout-ms MS]
//   avatar_bridge_listen --convert   # stdin lines "qx qy qz qw px py pz" -> Unreal pose JSON lines
//   avatar_bridge_listen --names     # the ARKit name table as a JSON list
// Stdout: {"seq", "t", "bs", "head": {"q", "p"}, "gaze": {"l", "r"}, "conf", "present"} per message.
// Stderr: {"malformed": reason} per skipped message, then {"received": n, "malformed": m} at exit.
// Exit status: 0 after --count messages (or end of --convert input), 2 when --timeout-ms passes with
// no message, 1 on bad arguments.
#include "avatar_bridge_client.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>

namespace {

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') { out += '\\'; out += static_cast<char>(c); }
        else if (c < 0x20) { char buf[8]; std::snprintf(buf, sizeof buf, "\\u%04x", c); out += buf; }
        else out += static_cast<char>(c);
    }
    return out + "\"";
}

// %.9g round-trips a float32 and %.17g a double, so the test can compare bit for bit.
std::string num(double x, int digits) {
    if (!std::isfinite(x)) return "null";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*g", digits, x);
    return buf;
}

template <std::size_t N>
std::string floats(const std::array<float, N>& a) {
    std::string out = "[";
    for (std::size_t i = 0; i < N; ++i) out += (i ? "," : "") + num(a[i], 9);
    return out + "]";
}

template <std::size_t N>
std::string doubles(const std::array<double, N>& a) {
    std::string out = "[";
    for (std::size_t i = 0; i < N; ++i) out += (i ? "," : "") + num(a[i], 17);
    return out + "]";
}

std::string frame_json(const avatar_bridge::FaceFrame& f) {
    return "{\"seq\":" + std::to_string(f.seq) + ",\"t\":" + num(f.t, 17) + ",\"bs\":" + floats(f.bs) +
           ",\"head\":{\"q\":" + floats(f.head.q) + ",\"p\":" + floats(f.head.p) + "},\"gaze\":{\"l\":" +
           floats(f.gaze.l) + ",\"r\":" + floats(f.gaze.r) + "},\"conf\":" + num(f.conf, 9) +
           ",\"present\":" + (f.present ? "true" : "false") + "}";
}

int convert() {
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::array<double, 4> q{};
        std::array<double, 3> p{};
        if (!(in >> q[0] >> q[1] >> q[2] >> q[3] >> p[0] >> p[1] >> p[2])) {
            std::cerr << "expected 7 numbers \"qx qy qz qw px py pz\" per line, got: " << line << "\n";
            return 1;
        }
        const auto u = avatar_bridge::to_unreal(q, p);
        std::cout << "{\"unreal\":{\"q\":" << doubles(u.q) << ",\"p\":" << doubles(u.p) << "}}" << std::endl;
    }
    return 0;
}

int names() {
    std::string out = "[";
    for (std::size_t i = 0; i < avatar_bridge::kArkitBlendshapes.size(); ++i)
        out += (i ? "," : "") + json_string(avatar_bridge::kArkitBlendshapes[i]);
    std::cout << out << "]" << std::endl;
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string bus = "tcp://127.0.0.1:5570";
    long count = 0;  // 0: until interrupted
    int timeout_ms = 0;  // 0: wait forever
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--convert") return convert();
        if (arg == "--names") return names();
        if (arg == "--bus" && has_value) bus = argv[++i];
        else if (arg == "--count" && has_value) count = std::atol(argv[++i]);
        else if (arg == "--timeout-ms" && has_value) timeout_ms = std::atoi(argv[++i]);
        else {
            std::cerr << "unknown argument " << arg
                      << "; usage: avatar_bridge_listen [--bus ENDPOINT] [--count N] [--timeout-ms MS] | --convert | --names\n";
            return 1;
        }
    }

    avatar_bridge::Subscriber sub;
    sub.on_malformed([](const std::string& reason) {
        std::cerr << "{\"malformed\":" << json_string(reason) << "}" << std::endl;
    });
    try {
        sub.connect(bus);
    } catch (const zmq::error_t& err) {
        std::cerr << "cannot connect to " << bus << ": " << err.what() << ". Pass --bus tcp://HOST:PORT\n";
        return 1;
    }
    int status = 0;
    avatar_bridge::FaceFrame frame;
    while (count == 0 || static_cast<long>(sub.received()) < count) {
        if (!sub.receive(frame, timeout_ms > 0 ? timeout_ms : 1000)) {
            if (timeout_ms > 0) { status = 2; break; }
            continue;
        }
        std::cout << frame_json(frame) << std::endl;
    }
    std::cerr << "{\"received\":" << sub.received() << ",\"malformed\":" << sub.malformed() << "}" << std::endl;
    return status;
}
