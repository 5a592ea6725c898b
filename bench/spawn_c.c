/* The C baseline of bench/spawn (compiled by it into build/bench/spawn_c).
 *
 *   spawn_c clone3 N       N x clone3(CLONE_PIDFD | CLONE_NEWPID | CLONE_NEWNS |
 *                          CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET), the
 *                          child execvp("true"), the parent waitid(P_PIDFD)
 *   spawn_c exec N ARGV..  N x fork + execvp(ARGV) + waitpid (for unshare(1))
 *
 * Prints the elapsed CLOCK_MONOTONIC nanoseconds of the whole loop. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef __NR_clone3
#define __NR_clone3 435
#endif

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int spawn_clone3(void)
{
  int pidfd = -1;
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = CLONE_PIDFD | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS |
               CLONE_NEWIPC | CLONE_NEWNET;
  args.pidfd = (uint64_t)(uintptr_t)&pidfd;
  args.exit_signal = SIGCHLD;
  long pid = syscall(__NR_clone3, &args, sizeof args);
  if (pid < 0) return -1;
  if (pid == 0) {
    char *const argv[] = {"true", NULL};
    execvp(argv[0], argv);
    _exit(127);
  }
  siginfo_t si;
  int r;
  do
    r = waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED);
  while (r < 0 && errno == EINTR);
  close(pidfd);
  if (r < 0) return -1;
  return si.si_code == CLD_EXITED && si.si_status == 0 ? 0 : -1;
}

static int spawn_exec(char **argv)
{
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execvp(argv[0], argv);
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
  if (argc < 3 || (strcmp(argv[1], "exec") == 0 && argc < 4)) {
    fprintf(stderr, "usage: spawn_c clone3 N | spawn_c exec N ARGV...\n");
    return 2;
  }
  long n = strtol(argv[2], NULL, 10);
  int exec_mode = strcmp(argv[1], "exec") == 0;
  int64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    if ((exec_mode ? spawn_exec(argv + 3) : spawn_clone3()) < 0) {
      fprintf(stderr, "spawn_c: spawn %ld failed: %s\n", i, strerror(errno));
      return 1;
    }
  }
  printf("%lld\n", (long long)(now_ns() - t0));
  return 0;
}
