// Waiting for a name to appear in the segment directory without polling it.
//
// A slave started before its master used to look for the name once per retry interval (100 ms by
// default), so it attached up to that long after the master had created it. NameWatch asks inotify about
// names created or moved into kSegmentDirectory and ends a wait as soon as its name is one of them. It is a
// hint: the caller looks at the name itself after every wait, and where inotify is unavailable (no
// descriptors left, a limit reached) the wait simply sleeps its whole time, as before.
#ifndef ESHM_INTERNAL_NAME_WATCH_H_
#define ESHM_INTERNAL_NAME_WATCH_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "eshm/deadline.h"

namespace eshm::internal {

class NameWatch {
 public:
  // Starts watching for `file_name` (a name in kSegmentDirectory). Create it before the look that found
  // the name missing, so that a name created right after that look still ends the next wait.
  explicit NameWatch(std::string_view file_name);
  ~NameWatch();
  NameWatch(const NameWatch&) = delete;
  NameWatch& operator=(const NameWatch&) = delete;

  // Sleeps up to `ns`, never past `deadline`; returns early once the name has been created or moved in
  // since the last wait (true), or when the time is up (false).
  bool Wait(std::int64_t ns, Deadline deadline);

 private:
  bool Appeared();  // reads the pending events; true if one names file_name_

  std::string file_name_;
  int fd_ = -1;
};

}  // namespace eshm::internal

#endif  // ESHM_INTERNAL_NAME_WATCH_H_
